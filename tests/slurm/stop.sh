#!/usr/bin/env bash
# Stop the test cluster started by tests/slurm/start.sh [STATE_DIR]: cancel its jobs, then end
# slurmd, slurmctld and (if start.sh started it) munged, each by the pid it wrote.
set -uo pipefail

STATE=${1:-/tmp/barloc-slurm}

command -v scancel >/dev/null && [ -e "$STATE/slurmctld.pid" ] && scancel --full --quiet -u "$(id -un)" 2>/dev/null

stop_pid() {  # stop_pid NAME PIDFILE
  local pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && grep -qa "$1" "/proc/$pid/comm" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
}

stop_pid slurmd "$STATE/slurmd.pid"
stop_pid slurmctld "$STATE/slurmctld.pid"
if [ -e "$STATE/munged.ours" ]; then
  stop_pid munged /run/munge/munged.pid
  rm -f "$STATE/munged.ours"
fi
echo "slurm: stopped (state left in $STATE)"
