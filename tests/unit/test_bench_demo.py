"""bench/bench_demo.py's accounting: the per-process hook and how records map to rules."""

import json
import os
import subprocess
import sys

from helpers.paths import REPO

sys.path.insert(0, str(REPO / "bench"))
import bench_demo  # noqa: E402


def test_each_python_process_writes_one_record_at_exit(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(bench_demo.SITECUSTOMIZE % (bench_demo.LIBRARIES,))
    account = tmp_path / "account.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "ISOFLOW_BENCH_ACCOUNT": str(account),
    }
    code = "import json, subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'])"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    records = [json.loads(line) for line in account.read_text().splitlines()]
    assert len(records) == 2  # the child, then its parent
    child, parent = records
    assert child["ppid"] == parent["pid"]
    assert parent["children_cpu"] >= child["cpu"] - 0.05
    assert parent["end"] >= child["end"] >= child["start"]
    assert "pandas" not in parent["libraries"]


def test_records_map_to_rules_and_phases():
    script = "/w/.snakemake/scripts/tmpab12_x.embed_shared.py"
    assert bench_demo.rule_of([script]) == "embed_shared"
    assert bench_demo.phase_of("embed_shared") == "embedding"
    assert bench_demo.phase_of("train") == "training"
    assert bench_demo.phase_of("explain") == "after training"
    assert bench_demo.rule_of(["/v/bin/snakemake", "--report", "r.html"]) == "snakemake --report"
    assert bench_demo.rule_of(["/v/bin/snakemake", "--cores", "2"]) == "snakemake (scheduler)"
    assert bench_demo.phase_of(bench_demo.rule_of(["-c", "x"])) == "other"


def _record(pid, ppid, argv, cpu, children_cpu=0.0, libraries=(), ancestors=()):
    return {
        "pid": pid,
        "ppid": ppid,
        "ancestors": list(ancestors),
        "argv": argv,
        "start": 0.0,
        "end": 1.0,
        "cpu": cpu,
        "children_cpu": children_cpu,
        "libraries": list(libraries),
    }


def test_accounting_counts_every_process_once():
    job = "/w/.snakemake/scripts/tmp1.{}.py"
    # the scheduler (pid 1) reaped: a job (5 CPU-s); the train job (1 CPU-s, whose pool
    # workers, 20 CPU-s, left no record); a job under a shell that did not exec it (pid 99,
    # 0.5 CPU-s of its own, no record)
    records = [
        _record(2, 1, [job.format("explain")], 5.0, libraries=("torch",)),
        _record(3, 1, [job.format("train")], 1.0, children_cpu=20.0, libraries=("pandas",)),
        _record(4, 99, [job.format("design")], 4.0, ancestors=(1,), libraries=("torch",)),
        _record(1, 0, ["/v/bin/snakemake", "--cores", "2"], 3.0, children_cpu=5 + 21 + 4.5),
    ]
    rows = bench_demo.account(records, {("torch",): 2.0, ("pandas",): 0.5, (): 0.0}, 2, 3.0)
    assert rows["explain"]["cpu"] == 5.0
    assert rows["train"]["cpu"] == 21.0  # its workers through its children time
    assert rows["design"]["cpu"] == 4.0
    assert rows["snakemake (scheduler)"]["cpu"] == 3.5  # itself and the shell, not the jobs
    total = sum(row["cpu"] for row in rows.values())
    assert abs(total - (3.0 + 5 + 21 + 4.5)) < 1e-9
    assert rows["train"]["imports"] == 0.5 + 2 * 3.0
    assert rows["explain"]["imports"] == 2.0
