"""The demo DAG on a real single-node SLURM cluster, through profiles/slurm.

tests/workflow/slurm/start-cluster.sh starts munge, MariaDB, slurmdbd, slurmctld and slurmd (as
root, with accounting and a fake GPU); the packages come from .ci/install-debian.sh. Where the
packages are missing the tests are skipped (tests/conftest.py counts them; under CI=true a
missing package is an error); where the cluster cannot start (not root) they are skipped with
the reason, except under CI=true, where they fail: CI installs the packages and runs as root.

The run uses the production profile plus tests/workflow/slurm/overlay.yaml (a second
--profile) with the per-rule memory and threads clamped to the test node, and config/demo.yaml
plus tests/workflow/slurm/demo-fast.yaml (resources.gpu: 1). A test-only Snakefile includes the
real one and adds one rule that fails on its first attempt, to see the profile's retries work
on SLURM. While the DAG runs, a watcher cuts the train job's time limit once it has trained an
epoch, to less than train.requeue_min_s ahead: the training reads its time left (squeue) at an
epoch's end, requeues itself and resumes, and its metrics must equal an uninterrupted run's.
Afterwards one run trains as two DDP ranks under `srun --ntasks-per-node=2`, against one
process.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.paths import REPO, SNAKEMAKE

HERE = REPO / "tests" / "workflow" / "slurm"
# Each level of the DAG costs about 45 s on the test cluster (a job's own snakemake start-up plus
# the plugin's status checks at 5, 20, 45 s), so the demo DAG takes several minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.needs("slurm")]
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "config", "envs", "profiles", "report")
FLAKY_RULE = "slurm_test_flaky"
TRAIN_RUN = "protein_enformer_cross_attention_s0"  # demo-fast.yaml's one run
# Once the train job has trained an epoch, the test cuts its time limit to CUT_MIN whole minutes
# past its elapsed time: 120-180 s left, less than train.requeue_min_s (300 s by default), so the
# training sees it at its next read of squeue (train.requeue_poll_s: 1 in demo-fast.yaml) and
# requeues; no signal.
CUT_MIN = 3
# DDP over two srun tasks against one process with the same global batch: the largest absolute
# difference allowed in mean test R2 / Spearman / Pearson and the last epoch's val_loss. The
# ranks take every other transcript of the single process's epoch order (EpochSeededSampler),
# so each step holds one process's rows and only the gradient all-reduce's float sums differ;
# measured on the test cluster (2026-11-28): 9.5e-9 (R2), 0, 7.5e-9, 0 (val_loss). Before the
# sampler sharded that order itself: 0.020, 0.011, 0.008, 0.004, allowed 0.05.
DDP_TOLERANCE = 1e-4
TARGETS = ["all", FLAKY_RULE]

TEST_SNAKEFILE = f'''\
include: "Snakefile"


def flaky_attempt(wildcards, attempt):
    return attempt


rule {FLAKY_RULE}:
    """Test only: fails on its first attempt, succeeds on the retry."""
    output:
        "results/slurm_test/flaky.txt",
    log:
        "logs/{FLAKY_RULE}/flaky.log",
    resources:
        attempt_number=flaky_attempt,
    shell:
        "echo attempt {{resources.attempt_number}} >> {{log}}; "
        "test {{resources.attempt_number}} -gt 1 && echo ok > {{output}}"
'''


def sh(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """A running test cluster: the names in STATE_DIR/cluster.env; stopped afterwards."""
    # Outside pytest's basetemp: a concurrent pytest session may rotate that away, and MariaDB's
    # data directory lives here while the cluster runs.
    state = Path(tempfile.mkdtemp(prefix="isoflow-slurm-state-"))
    started = sh("bash", HERE / "start-cluster.sh", state, timeout=300)
    if started.returncode == 2:
        reason = started.stderr.strip()
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        env = dict(line.split("=", 1) for line in (state / "cluster.env").read_text().splitlines())
        yield {**env, "state": str(state), "banner": started.stdout}
    finally:
        stopped = sh("bash", HERE / "stop-cluster.sh", state, timeout=120)
        print(stopped.stdout, stopped.stderr)
        if stopped.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)


def clamped_profile(cluster: dict[str, str]) -> dict:
    """profiles/slurm with the EDIT lines filled in for the test cluster, per-rule memory and
    threads clamped to its one node, and tests/workflow/slurm/overlay.yaml on top."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    cpus, mem_mb = int(cluster["CPUS"]), int(cluster["MEM_MB"])
    per_job_mem = mem_mb // 2
    profile["default-resources"] = {
        **profile.get("default-resources", {}),
        "slurm_account": cluster["ACCOUNT"],
        "slurm_partition": cluster["PARTITION"],
    }
    train = profile["set-resources"]["train"]
    # requeueing allowed, the log appended to (SLURM empties it when the requeued job starts
    # again); no --signal, whose USR1 kills the job's own Snakemake process
    assert "--requeue" in train["slurm_extra"].split(), train
    assert "--open-mode=append" in train["slurm_extra"].split(), train
    assert "--signal" not in train["slurm_extra"], train
    for resources in [profile["default-resources"], *profile.get("set-resources", {}).values()]:
        if "mem_mb" in resources:
            resources["mem_mb"] = min(int(resources["mem_mb"]), per_job_mem)
        if "slurm_partition" in resources:
            resources["slurm_partition"] = cluster["PARTITION"]
    # Half the node, so that two jobs (also two GPU jobs: the node has two fake GPUs) run at once.
    # The profile leaves train's threads to the rule (the demo's one job: max(2,
    # resources.train_processes), rules/train.smk): clamped too. Its cpus_per_task
    # (isoflow.workflow.train_cpus: the demo's 2 worker processes, 2 CPUs) does not follow
    # the threads, so it is clamped here as well (on a 2-CPU node it took the whole node;
    # tests/workflow/test_dryrun.py checks the derived count).
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    rule_threads = {"train": max(2, int(demo["resources"]["train_processes"]))}
    profile["set-threads"] = {
        rule: max(1, min(int(threads), cpus // 2))
        for rule, threads in {**rule_threads, **profile.get("set-threads", {})}.items()
    }
    train["cpus_per_task"] = max(1, cpus // 2)
    profile.update(yaml.safe_load((HERE / "overlay.yaml").read_text()))
    return profile


def parse_jobs(text: str) -> dict[int, dict]:
    """Snakemake jobid -> {rule, local, resources} from a run's or a dry run's printout."""
    jobs: dict[int, dict] = {}
    current: dict | None = None
    for line in text.splitlines():
        start = re.fullmatch(r"(local)?rule (\S+):", line.strip())
        if start and not line.startswith("    "):
            current = {"rule": start[2], "local": bool(start[1]), "resources": {}}
        elif current is not None and line.startswith("    jobid: "):
            jobs[int(line.split(": ", 1)[1])] = current
        elif current is not None and line.startswith("    resources: "):
            items = line.split(": ", 1)[1].split(", ")
            current["resources"] = dict(item.split("=", 1) for item in items if "=" in item)
    return jobs


def without_shown_logs(text: str) -> str:
    """The run's printout minus failed jobs' logs that --show-failed-logs copies into it (a SLURM
    job's log holds that job's own snakemake printout, with its own rule and jobid lines)."""
    return re.sub(r"^Logfile .*:\n(=+)\n.*?^\1$", "", text, flags=re.M | re.S)


def sacct_rows(run_id: str) -> list[dict[str, str]]:
    fields = "JobID,JobName,Comment,State,ExitCode,ReqTRES,AllocTRES,Account,Partition"
    done = sh(
        "sacct", "-X", "-P", "-n", "--name", run_id, "-S", "2000-01-01", "-o", fields, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = fields.split(",")
    return [dict(zip(names, line.split("|"), strict=True)) for line in done.stdout.splitlines()]


def seconds(slurm_time: str) -> int:
    """squeue's elapsed time, ``[D-][H:]M:SS``, in seconds."""
    days, _, clock = slurm_time.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def cut_train_time_limit(work: Path, done: threading.Event, cut: dict) -> None:
    """Once the train job has written its first checkpoint, cut its time limit to CUT_MIN
    whole minutes past its elapsed time: its run no longer fits, and the time left is below
    train.requeue_min_s. Once SLURM has requeued the job, give it its limit back, so that the
    requeued job can finish. What was done goes into ``cut``."""
    checkpoint = work / "results" / "runs" / TRAIN_RUN / "checkpoints" / "last.ckpt"
    while not done.wait(1):
        listed = sh("squeue", "-h", "-o", "%i|%k|%T|%l|%M", timeout=60).stdout.splitlines()
        rows = [line.split("|") for line in listed]
        train = [r for r in rows if rule_of_comment(r[1]) == "train"] if rows else []
        if not train:
            continue
        job, _, state, limit, elapsed = train[0]
        if "job" not in cut and state == "RUNNING" and checkpoint.exists():
            minutes = seconds(elapsed) // 60 + CUT_MIN
            updated = sh("scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}", timeout=60)
            assert updated.returncode == 0, updated.stderr
            cut.update(job=job, limit=limit, cut_to=minutes, elapsed=elapsed)
        elif cut.get("job") == job and "restored" not in cut and state != "RUNNING":
            back = sh("scontrol", "update", f"JobId={job}", f"TimeLimit={cut['limit']}", timeout=60)
            if back.returncode == 0:  # not while the job is still completing: next second
                cut["restored"] = state


@pytest.fixture(scope="module")
def demo_on_slurm(slurm_cluster) -> dict:
    """Runs the demo DAG (+ the flaky rule) on the test cluster once; returns what happened."""
    work = Path(tempfile.mkdtemp(prefix="isoflow-slurm-demo-"))
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, work / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, work / part)
    (work / "Snakefile.slurmtest").write_text(TEST_SNAKEFILE)
    profile_dir = work / "test-profile"
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(clamped_profile(slurm_cluster)))
    shutil.copy2(HERE / "demo-fast.yaml", work / "demo-fast.yaml")

    command = [
        SNAKEMAKE, *TARGETS, "-s", "Snakefile.slurmtest", "--profile", "profiles/slurm",
        "--profile", profile_dir, "--configfile", "config/demo.yaml", "demo-fast.yaml",
    ]  # fmt: skip
    dry = sh(*command, "-n", cwd=work, timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    planned = parse_jobs(dry.stdout)
    done, cut = threading.Event(), {}
    watcher = threading.Thread(target=cut_train_time_limit, args=(work, done, cut), daemon=True)
    watcher.start()
    try:
        run = sh(*command, cwd=work, timeout=1500)
    finally:
        done.set()
        watcher.join(timeout=30)
    log = run.stdout + run.stderr
    (work / "snakemake-run.log").write_text(log)
    assert run.returncode == 0, f"{work}/snakemake-run.log:\n{log[-6000:]}"
    run_id = re.search(r"SLURM run ID: (\S+)", log)[1]
    yield {
        "work": work,
        "log": log,
        "planned": planned,
        "ran": parse_jobs(without_shown_logs(log)),
        "sacct": sacct_rows(run_id),
        "run_id": run_id,
        "time_limit_cut": cut,
        "train_threads": clamped_profile(slurm_cluster)["set-threads"]["train"],
    }
    # Kept when the run failed (the assertion above names it); removed once the tests have read it.
    shutil.rmtree(work, ignore_errors=True)


def rule_of_comment(comment: str) -> str:
    """The plugin's --comment is rule_<rule> or rule_<rule>_wildcards_<values>."""
    return re.fullmatch(r"rule_(.+?)(_wildcards_.*)?", comment)[1]


def test_every_job_of_the_dag_ran_as_a_completed_slurm_job(demo_on_slurm, capsys) -> None:
    planned, ran, sacct = demo_on_slurm["planned"], demo_on_slurm["ran"], demo_on_slurm["sacct"]
    # The dry run lists the DAG; the run's own printout says which jobs stayed local.
    assert Counter(job["rule"] for job in ran.values()) == Counter(
        job["rule"] for job in planned.values()
    )
    local = {job["rule"] for job in ran.values() if job["local"]}
    remote = [job for job in planned.values() if job["rule"] not in local]
    rules = {job["rule"] for job in remote}
    assert {"annotation", "sequences", "targets", "dataset", FLAKY_RULE} <= rules, sorted(rules)
    with capsys.disabled():
        print(f"\n{len(sacct)} SLURM jobs on the test cluster (sacct):")
        print(*(f"  {'|'.join(row.values())}" for row in sacct), sep="\n")

    completed: dict[str, int] = {}
    for row in sacct:
        if row["State"] == "COMPLETED":
            rule = rule_of_comment(row["Comment"])
            completed[rule] = completed.get(rule, 0) + 1
    expected: dict[str, int] = {}
    for job in remote:
        expected[job["rule"]] = expected.get(job["rule"], 0) + 1
    assert completed == expected, f"sacct COMPLETED per rule {completed}, DAG {expected}"
    # Local jobs are only those without anything to run (the target rule `all`).
    assert local <= {"all"}, f"rules run on the submit host instead of SLURM: {local}"
    assert all(row["Account"] == "isoflow" for row in sacct)


def test_gpu_rules_were_submitted_with_a_gpu(demo_on_slurm) -> None:
    """Rules with resources gpu > 0 (train, from config resources.gpu) ask SLURM for a GPU."""
    planned, sacct = demo_on_slurm["planned"], demo_on_slurm["sacct"]
    gpu_rules = {job["rule"] for job in planned.values() if int(job["resources"].get("gpu", 0)) > 0}
    assert "train" in gpu_rules, f"no train job asking for a GPU: {gpu_rules}"
    for row in sacct:
        asked = "gres/gpu=1" in row["ReqTRES"]
        assert asked == (rule_of_comment(row["Comment"]) in gpu_rules), row
        if asked and row["State"] == "COMPLETED":
            assert "gres/gpu=1" in row["AllocTRES"], row


def test_a_job_failing_once_is_retried_and_the_run_completes(demo_on_slurm) -> None:
    rows = [row for row in demo_on_slurm["sacct"] if row["Comment"] == f"rule_{FLAKY_RULE}"]
    assert [row["State"] for row in rows] == ["FAILED", "COMPLETED"], rows
    work = demo_on_slurm["work"]
    assert (work / "results" / "slurm_test" / "flaky.txt").read_text() == "ok\n"
    assert "attempt 2" in (work / "logs" / FLAKY_RULE / "flaky.log").read_text()


def test_a_train_job_past_its_time_limit_is_requeued_and_ends_as_uninterrupted(
    demo_on_slurm, tmp_path
) -> None:
    """With its time limit cut (no signal: the profile sends none), the training sees at an
    epoch's end that another epoch would not fit (squeue's time left), writes its checkpoints
    and requeues the job; the requeued job resumes and ends with the metrics and history of an
    uninterrupted run (the same training, run here without SLURM)."""
    cut, work = demo_on_slurm["time_limit_cut"], demo_on_slurm["work"]
    assert "job" in cut, "the train job was never seen running with a checkpoint"
    attempts = work / "results" / "runs" / TRAIN_RUN / "checkpoints" / "train.log"
    assert "restored" in cut, (
        f"the train job was not requeued after its limit was cut: {cut}; the run's own log:\n"
        + (attempts.read_text()[-3000:] if attempts.exists() else f"{attempts}: none")
    )
    done = sh("sacct", "-D", "-X", "-P", "-n", "-j", cut["job"], "-o", "State", timeout=60)
    states = done.stdout.split()
    assert states[-1] == "COMPLETED" and "REQUEUED" in states[:-1], (cut, states)
    # the job's log holds every attempt, though Snakemake deleted it before the requeued one
    # ran: the earlier ones copied at its end from the run's own log (isoflow.attempts)
    job_log = (work / "logs" / "train" / f"{TRAIN_RUN}.log").read_text()
    this, copied, earlier = job_log.partition("earlier attempt(s) of this run, copied from")
    assert copied and "==== attempt 1 of" in earlier, job_log[-3000:]
    assert f"requeued: SLURM job {cut['job']}" in earlier and "epoch 0: train_loss" in earlier
    assert re.search(r"==== attempt [2-9]\d* of .*resumed from", this), this[:3000]
    # and the SLURM log keeps the first attempt (the profile's --open-mode=append; SLURM
    # empties it by default when the requeued job starts again), the requeued one after it
    slurm_log = (work / "logs" / "slurm" / "rule_train" / f"{cut['job']}.log").read_text()
    first, requeue, then = slurm_log.partition(f"JOB {cut['job']} ON localhost CANCELLED AT")
    assert requeue and "DUE TO JOB REQUEUE" in then, slurm_log[-3000:]
    # what the job logged before `scontrol requeue` (after it SLURM stops the job's step at
    # once, and a line written then may not reach this log: the run's attempts log holds it)
    assert re.search(
        rf"requeueing job {cut['job']}\b|requeued by run .*stopping the other runs", first
    ), first[-3000:]
    assert "Workflow ID:" in first and "Workflow ID:" in then, slurm_log[-3000:]

    run_dir = work / "results" / "runs" / TRAIN_RUN
    fingerprint = json.loads((run_dir / "checkpoints" / "fingerprint.json").read_text())
    history = (run_dir / "history.csv").read_text()
    assert [int(line.split(",")[0]) for line in history.splitlines()[1:]] == list(range(30))
    alone = tmp_path / "uninterrupted"
    command = [
        sys.executable, "-m", "isoflow.train",
        "--config", str(run_dir / "checkpoints" / "fingerprint.json"),
        "--experiment", json.dumps(fingerprint["experiment"]),
        "--dataset", str(work / "results" / "dataset" / "demo.parquet"),
        "--cache", f"protein={work / 'results' / 'embeddings' / 'esm2'}",
        "--run-dir", str(alone),
    ]  # fmt: skip
    threads = str(demo_on_slurm["train_threads"])  # as the SLURM job's torch.set_num_threads
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": threads}
    trained = sh(*command, env=env, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (alone / "history.csv").read_text() == history
    assert (alone / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()


def test_ddp_with_two_srun_tasks_matches_one_process(demo_on_slurm, slurm_cluster, tmp_path):
    """`srun` with two tasks (one per device: --ntasks-per-node=2) trains one run as two DDP
    ranks over gloo, each rank reading its rank from srun (SLURMEnvironment); with batch_size
    16 per rank it ends as one process with batch_size 32 does, within DDP_TOLERANCE (each
    step holds the single process's rows; the all-reduce sums in another order). Dropout
    off: each rank draws its own masks."""
    work = demo_on_slurm["work"]
    run_dir = work / "results" / "runs" / TRAIN_RUN
    fingerprint = json.loads((run_dir / "checkpoints" / "fingerprint.json").read_text())
    # a run's fingerprint holds the rna / protein sections of the modalities it reads only
    # (settings.scoped_settings): this protein-only run's has no rna
    keys = ("model", "train", "encoders", "rna", "protein")
    config = {key: fingerprint[key] for key in keys if key in fingerprint}
    config["model"]["dropout"] = 0.0
    config["train"].update(max_epochs=3, patience=1000, accelerator="cpu", progress_bar=False)
    runs = {
        "one": {"batch_size": 32, "devices": 1, "strategy": "auto"},
        "ddp": {"batch_size": 16, "devices": 2, "strategy": "ddp"},
    }
    commands = {}
    for name, train in runs.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**config, "train": {**config["train"], **train}}))
        commands[name] = [
            sys.executable, "-m", "isoflow.train", "--config", str(path),
            "--experiment", json.dumps(fingerprint["experiment"]),
            "--dataset", str(work / "results" / "dataset" / "demo.parquet"),
            "--cache", f"protein={work / 'results' / 'embeddings' / 'esm2'}",
            "--run-dir", str(tmp_path / name),
        ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    alone = sh(*commands["one"], env=env, timeout=900)
    assert alone.returncode == 0, alone.stderr[-3000:]
    log = tmp_path / "ddp.log"
    submitted = sh(
        "sbatch", "--wait", "--parsable", "-A", slurm_cluster["ACCOUNT"],
        "-p", slurm_cluster["PARTITION"], "--nodes=1", "--ntasks-per-node=2",
        "--cpus-per-task=1", "--mem=4000", "-t", "30", "-o", str(log),
        "--wrap", "srun " + shlex.join(commands["ddp"]),
        env=env, timeout=1200,
    )  # fmt: skip
    text = log.read_text() if log.exists() else ""
    assert submitted.returncode == 0, submitted.stderr + text[-4000:]
    assert text.count("ddp: find_unused_parameters=False") == 2, text[-4000:]  # two ranks
    assert "world_size: 2" in text or "distributed_backend=gloo" in text, text[-4000:]

    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    differences = {key: abs(ddp["mean"][key] - one["mean"][key]) for key in one["mean"]}
    one_history = pd.read_csv(tmp_path / "one" / "history.csv")
    ddp_history = pd.read_csv(tmp_path / "ddp" / "history.csv")
    differences["val_loss"] = abs(ddp_history["val_loss"].iat[-1] - one_history["val_loss"].iat[-1])
    assert len(ddp_history) == len(one_history) == 3
    print(f"\nDDP (2 srun tasks) vs one process, largest absolute differences: {differences}")
    assert ddp["n_test"] == one["n_test"]
    assert max(differences.values()) < DDP_TOLERANCE, differences
