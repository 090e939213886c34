#!/usr/bin/env bash
# Start a throwaway single-node Slurm cluster on this machine, for tests/test_slurm.py and CI.
#
#   bash tests/slurm/start.sh [STATE_DIR]      (default /tmp/barloc-slurm; stop with stop.sh)
#
# Installs nothing: slurm-wlm and munge must be installed already (.ci/run does
# `apt-get install slurm-wlm munge`). Needs root: slurmd runs jobs, and the config goes to
# /etc/slurm/slurm.conf, the only place the `srun` inside every job finds it (the Snakemake
# jobstep plugin drops SLURM_CONF from the job's environment). A slurm.conf this script did
# not write is never overwritten.
#
# No accounting database (no slurmdbd): jobs are tracked with squeue, which lists finished
# jobs for MinJobAge seconds; the executor plugin's status command is set to squeue in the
# test profile. No cgroups: proctrack/linuxproc and task/none work in containers.
set -euo pipefail

STATE=${1:-/tmp/barloc-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# barloc test cluster (tests/slurm/start.sh)"

die() { echo "tests/slurm/start.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (slurmd and /etc/slurm/slurm.conf)"
for bin in munged slurmctld slurmd sinfo; do
  command -v "$bin" >/dev/null || die "$bin not found: apt-get install slurm-wlm munge"
done
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; refusing to touch a real cluster's config"
fi
if pgrep -x slurmctld >/dev/null && ! [ -e "$STATE/slurmctld.pid" ]; then
  die "a slurmctld not started by this script is running"
fi

mkdir -p "$STATE"/{ctld,spool,log} /etc/slurm

# --- munge: Slurm's authentication. The Debian package creates the key; make one if not.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 600 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  # munged writes its pid to /run/munge/munged.pid; stop.sh ends it only if we started it.
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged
  else
    munged --force
  fi
  touch "$STATE/munged.ours"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n | unmunge >/dev/null || die "munged did not start"
fi

# --- slurm.conf for one node called localhost with this machine's CPUs and memory.
cpus=$(nproc)
mem_total=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
real_mem=$(( mem_total * 9 / 10 ))   # leave room for the OS and the Snakemake process

cat >"$CONF" <<EOF
$MARK
ClusterName=barloc
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups: plain process tracking, no CPU binding (works in containers and VMs).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No accounting database: status comes from slurmctld (squeue) for MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
# CPUs and memory are consumable, so jobs are packed by their requests.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SchedulerParameters=sched_interval=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
NodeName=localhost CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# --- daemons (they fork into the background and write their pid files)
pgrep -x slurmctld >/dev/null || slurmctld -c -i   # -c: a clean start, no jobs from an earlier run
pgrep -x slurmd >/dev/null || slurmd -N localhost

for _ in $(seq 60); do
  state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
  case "$state" in
    idle*) echo "slurm: node localhost idle ($cpus CPUs, ${real_mem} MB), state in $STATE"; exit 0 ;;
    down*|drain*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "slurm did not come up; last node state: '${state:-none}'" >&2
tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 2>/dev/null || true
exit 1
