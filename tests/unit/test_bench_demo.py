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
