"""The workflow on a real single-node Slurm cluster through workflow/profiles/slurm.

tests/slurm/start.sh brings up munge, slurmctld and slurmd on this machine (root; Debian's
slurm-wlm and munge packages, which .ci/run installs); the tiny workflow then runs with the
Slurm profile, adjusted only for this cluster (no GPU, its partition, small memory requests,
quick status checks), and its outputs must match a local run of the same config.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import wait_for_epochs
from test_workflow import REPO, SNAKEMAKE, make_workdir, snakemake

PROFILE = REPO / "workflow/profiles/slurm/config.yaml"
START, STOP = REPO / "tests/slurm/start.sh", REPO / "tests/slurm/stop.sh"
STATE = Path(os.environ.get("BARLOC_SLURM_STATE", "/tmp/barloc-slurm"))
RULES = ("ingest", "split", "train", "predict", "calibrate", "prior_shift", "evaluate", "report")
TASKS = ("fish_origin", "localization")

pytestmark = pytest.mark.slow


def test_profile_asks_slurm_for_a_gpu_only_for_training(tmp_path):
    """The profile itself, without a cluster: a dry run resolves every job's request."""
    wd = make_workdir(tmp_path)
    res = snakemake(wd, "--profile", str(PROFILE.parent), "-n", "--workflow-profile", "none")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", res.stdout + res.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block)
        r = re.search(r"resources: (.*)", block)
        if m and r:
            jobs.setdefault(m.group(1), []).append(dict(kv.split("=", 1) for kv in r.group(1).split(", ")))
    assert set(jobs) >= set(RULES)
    for rule in RULES:
        for res_ in jobs[rule]:
            assert ("gpu" in res_) == (rule == "train"), (rule, res_)
            assert int(res_["runtime"]) > 0 and int(res_["mem_mb"]) > 0
    assert all(r["gpu"] == "1" and r["runtime"] == "120" for r in jobs["train"])
    cfg = yaml.safe_load(PROFILE.read_text())
    assert cfg["executor"] == "slurm" and cfg["slurm-status-command"] == "squeue"


def test_workstation_profile_runs_every_job_here(tmp_path):
    wd = make_workdir(tmp_path)
    profile = REPO / "workflow/profiles/default"
    res = snakemake(wd, "--profile", str(profile), "-n", "--workflow-profile", "none")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    for rule in RULES:
        assert re.search(rf"^(local)?rule {rule}:", out, flags=re.M), rule
    assert "gpu=" not in out and yaml.safe_load((profile / "config.yaml").read_text())["cores"] == "all"


# --- the real cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster():
    if shutil.which("slurmctld") is None:
        pytest.skip("slurmctld is not installed (apt-get install slurm-wlm munge; .ci/run does this)")
    # One test cluster a machine (its slurm.conf is /etc/slurm/slurm.conf): take turns.
    lock = open("/tmp/barloc-slurm.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    ours = not _alive(STATE / "slurmctld.pid")
    try:
        if ours:
            res = subprocess.run(["bash", str(START), str(STATE)], capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, f"tests/slurm/start.sh failed:\n{res.stdout}\n{res.stderr}"
        yield STATE
    finally:
        if ours:
            subprocess.run(["bash", str(STOP), str(STATE)], capture_output=True, text=True, timeout=120)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def cluster_profile(tmp: Path) -> Path:
    """workflow/profiles/slurm with only what this one-node cluster needs changed."""
    cfg = yaml.safe_load(PROFILE.read_text())
    cfg.update(
        {
            # Fast turnaround on an idle local cluster.
            "slurm-init-seconds-before-status-checks": 1,
            "latency-wait": 5,
            "retries": 0,
            "keep-going": False,
            "jobs": 4,
            # Keep every job's Slurm log: the test reads the job ids from them.
            "slurm-keep-successful-logs": True,
        }
    )
    # The cluster's partition and an account (accepted as is: no accounting database).
    cfg["default-resources"] = {**cfg["default-resources"], "slurm_partition": "debug", "slurm_account": "barloc-ci"}
    # No GPU here; and small memory requests so two jobs fit on a small CI machine
    # (memory is a consumable resource in tests/slurm/start.sh's slurm.conf).
    set_res = {rule: dict(res) for rule, res in cfg.get("set-resources", {}).items()}
    assert set_res["train"].pop("gpu") == 1
    for rule in RULES:
        set_res.setdefault(rule, {})["mem_mb"] = 600
    cfg["set-resources"] = set_res
    prof = tmp / "profile"
    prof.mkdir(parents=True)
    (prof / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return prof


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """(local run dir, Slurm run dir, Slurm run's stderr). The local reference run goes on
    beside the Slurm run, which spends most of its time waiting on the scheduler."""
    base = tmp_path_factory.mktemp("slurm")
    local, cluster = make_workdir(base / "local"), make_workdir(base / "slurm")
    t0 = time.perf_counter()
    local_proc = subprocess.Popen(
        SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(local), "--cores", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        res = subprocess.run(
            SNAKEMAKE
            + [
                "-s",
                str(REPO / "Snakefile"),
                "--directory",
                str(cluster),
                "--profile",
                str(cluster_profile(base)),
                "--workflow-profile",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=cluster,
        )
        t_slurm = time.perf_counter() - t0
        local_out, _ = local_proc.communicate(timeout=900)
    finally:
        if local_proc.poll() is None:
            local_proc.kill()
    print(f"slurm run {t_slurm:.0f} s, both runs {time.perf_counter() - t0:.0f} s")
    assert res.returncode == 0, "Slurm run failed:\n" + res.stderr[-6000:] + _slurm_logs(cluster)
    assert local_proc.returncode == 0, local_out[-4000:]
    return local, cluster, res.stderr


def _slurm_logs(wd: Path) -> str:
    logs = sorted((wd / ".snakemake/slurm_logs").rglob("*.log"))
    return "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in logs[-3:])


def test_jobs_ran_as_slurm_jobs(runs):
    _, wd, log = runs
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    slurm_ids = set(submitted.values())
    # one report job, and an ablation job for the multiclass task only
    assert len(slurm_ids) == len(submitted) == len(RULES) * len(TASKS) - (len(TASKS) - 1) + 1
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    # Slurm's own record (squeue keeps finished jobs for MinJobAge; no accounting database).
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%k"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = {jid: (state, comment) for jid, state, comment in (line.split("|", 2) for line in out.split())}
    assert set(seen) == slurm_ids
    assert {state for state, _ in seen.values()} == {"COMPLETED"}
    comments = {comment for _, comment in seen.values()}
    for rule in RULES[:-1]:
        for task in TASKS:
            assert f"rule_{rule}_wildcards_{task}" in comments
    assert "rule_report" in comments
    # The plugin's per-job logs, named by Slurm job id, one folder per rule and wildcards.
    logs = {p.stem for p in (wd / ".snakemake/slurm_logs").rglob("*.log")}
    assert slurm_ids <= logs
    train_logs = list((wd / ".snakemake/slurm_logs/rule_train/fish_origin").glob("*.log"))
    assert len(train_logs) == 1 and train_logs[0].stem in slurm_ids


def test_slurm_outputs_match_a_local_run(runs):
    local, cluster, _ = runs
    for task in TASKS:
        a = pd.read_csv(local / f"results/{task}/calls.tsv", sep="\t")
        b = pd.read_csv(cluster / f"results/{task}/calls.tsv", sep="\t")
        assert list(a["id"]) == list(b["id"]) and list(a["call"]) == list(b["call"]), task
        num = a.select_dtypes("number").columns
        pd.testing.assert_frame_equal(a[num], b[num], check_exact=False, atol=1e-5, rtol=1e-4)
        ma = json.loads((local / f"results/{task}/metrics.json").read_text())
        mb = json.loads((cluster / f"results/{task}/metrics.json").read_text())
        _assert_close(ma, mb, task)
    assert (cluster / "results/report/index.html").stat().st_size > 0


def _assert_close(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_cancelled_train_job_is_resubmitted_and_resumes(slurm_cluster, tmp_path):
    """As when Slurm ends a job at its time limit: the profile's retry resubmits it with twice
    the runtime, and training continues from the last epoch saved."""

    def longer_localization(cfg, wd):
        task = cfg["tasks"]["localization"]
        task["train"] = {**task["train"], "max_epochs": 12, "patience": 12}
        cfg["tasks"] = {"localization": task}

    wd = make_workdir(tmp_path / "wd", longer_localization)
    prof = cluster_profile(tmp_path)
    cfg = yaml.safe_load((prof / "config.yaml").read_text())
    (prof / "config.yaml").write_text(yaml.safe_dump(cfg | {"retries": 1}))
    # killed in the second fold model: the first one is kept, the second resumes
    ck = wd / "results/localization/checkpoints/fold1/last.ckpt"
    logs = wd / ".snakemake/slurm_logs/rule_train/localization"
    proc = subprocess.Popen(
        SNAKEMAKE
        + [
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(wd),
            "--profile",
            str(prof),
            "--workflow-profile",
            "none",
            "results/localization/model.ckpt",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=wd,
    )
    cancelled = None
    try:
        if wait_for_epochs(ck, 2, proc) >= 2:
            cancelled = [p.stem for p in logs.glob("*.log")]
            subprocess.run(["scancel", *cancelled], check=True)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cancelled and len(cancelled) == 1, "training ended before it could be cancelled"
    assert proc.returncode == 0, out[-5000:]
    assert f"SLURM-job '{cancelled[0]}' failed, SLURM status is: 'CANCELLED'" in out
    retry = sorted({p.stem for p in logs.glob("*.log")} - set(cancelled))
    assert len(retry) == 1, retry
    # Slurm's view: the first job cancelled, the resubmitted one done with twice the time limit.
    jobs = subprocess.run(
        ["squeue", "--states=all", "--noheader", "-j", f"{cancelled[0]},{retry[0]}", "--format=%i|%T|%l"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(jobs) == sorted([f"{cancelled[0]}|CANCELLED|2:00:00", f"{retry[0]}|COMPLETED|4:00:00"])
    log = (wd / "results/logs/localization/train.log").read_text()
    assert re.search(r"resuming localization fold 1 from \S+last.ckpt \(epoch ([2-9]|1[01]) done\)", log), log[-2000:]
    assert "localization fold 0: finished before, not retrained" in log
    history = pd.read_csv(wd / "results/localization/history.tsv", sep="\t")
    for _, rows in history.groupby("fold"):
        assert list(rows["epoch"]) == list(range(12))


def test_two_process_training_in_one_slurm_job(slurm_cluster, tmp_path):
    """Multi-GPU training as the profile runs it, with two CPU processes for two GPUs: the
    plugin starts the train job as one Slurm task (srun -n1), in which Lightning must start
    the second process itself rather than wait for Slurm to start it."""

    def two_devices(cfg, wd):
        cfg["trainer"].update({"devices": 2, "strategy": "ddp", "threads": 2})
        cfg["tasks"] = {"fish_origin": cfg["tasks"]["fish_origin"]}

    wd = make_workdir(tmp_path / "wd", two_devices)
    res = subprocess.run(
        SNAKEMAKE
        + [
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(wd),
            "--profile",
            str(cluster_profile(tmp_path)),
            "--workflow-profile",
            "none",
            "results/fish_origin/model.json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=wd,
    )
    assert res.returncode == 0, res.stderr[-5000:] + _slurm_logs(wd)
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", res.stderr)
    logs = list((wd / ".snakemake/slurm_logs/rule_train/fish_origin").glob("*.log"))
    assert len(logs) == 1 and logs[0].stem in submitted
    job_log = logs[0].read_text()
    assert "(2 processes, rank 0)" in job_log and "[rank 1]: trained" in job_log, job_log[-3000:]
    assert json.loads((wd / "results/fish_origin/model.json").read_text())["world_size"] == 2
