"""The full-scale rehearsal's parts that can be checked in seconds (bench/rehearsal.py): the
table it builds from Snakemake's benchmark TSVs and its target checks, and the DAG that its
overlay config (config/rehearsal.yaml) resolves. The rehearsal itself is `make rehearsal`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from helpers.dryrun import parse_dry_run
from helpers.paths import REPO, SNAKEMAKE

spec = importlib.util.spec_from_file_location("rehearsal", REPO / "bench" / "rehearsal.py")
rehearsal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rehearsal)

# Snakemake 9's benchmark file: this header, then one row per repeat.
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path: Path, *rows: tuple[float, str]) -> None:
    """rows: (wall s, max_rss text) per repeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"{s}\t0:00:{int(s):02d}\t{rss}\t900.0\t100.0\t120.0\t1.0\t2.0\t50.0\t{s}\n"
        for s, rss in rows
    )
    path.write_text(HEADER + body)


def fabricate(work: Path, targets_rss: str = "700.5") -> None:
    bench = work / "benchmarks"
    write_benchmark(bench / "annotation" / "annotation.tsv", (30.0, "1500.0"))
    write_benchmark(bench / "genome_index" / "genome_index.tsv", (12.0, "NA"))
    write_benchmark(bench / "sequences" / "sequences.tsv", (50.0, "800.0"))
    # three repeats: the median wall (200) is kept, and the largest max_rss
    write_benchmark(
        bench / "targets" / "smts.tsv", (250.0, "600"), (200.0, targets_rss), (100.0, "5")
    )
    write_benchmark(bench / "splits" / "gene.tsv", (5.0, "300.0"))
    write_benchmark(bench / "dataset" / "gtex_v8.tsv", (40.0, "2500.25"))
    refs = {
        "gffread": {"s": 50.0, "cpu_s": 49.0, "max_rss": 400},
        "zcat": {"s": 100.0, "cpu_s": 99.0, "max_rss": 3},
        "compare": {
            "rna": {"ours": 10, "gffread": 10, "identical": 10},
            "protein": {
                "ours": 4,
                "gffread": 4,
                "identical": 3,
                "x_where_gffread_resolved_an_n_codon": 1,
                "other_differences": 0,
            },
        },
    }
    (work / "references.json").write_text(json.dumps(refs))


def test_benchmark_tsvs_are_read_per_rule(tmp_path: Path) -> None:
    fabricate(tmp_path)
    rules = rehearsal.read_benchmarks(tmp_path / "benchmarks")
    assert set(rules) == set(rehearsal.RULES)
    assert rules["annotation"] == {"s": 30.0, "max_rss": 1500.0, "cpu_time": 30.0}
    assert rules["genome_index"]["max_rss"] is None  # Snakemake's NA
    assert rules["targets"]["s"] == 200.0
    assert rules["targets"]["max_rss"] == 700.5
    assert rules["dataset"]["max_rss"] == 2500.25


def test_targets_met_and_missed_are_flagged(tmp_path: Path) -> None:
    fabricate(tmp_path)
    verdicts = {
        name: met
        for name, _, met in rehearsal.check_targets(
            rehearsal.read_benchmarks(tmp_path / "benchmarks"),
            json.loads((tmp_path / "references.json").read_text()),
        )
    }
    assert verdicts == {
        "annotation + sequences <= 2x gffread wall": True,  # 80 s / 50 s = 1.6x
        "sequences identical to gffread's": True,  # only the documented N-codon X differs
        "targets <= 3x zcat | wc -l wall": True,  # 200 s / 100 s
        "targets peak <= 1 GiB": True,
        "data half <= 45 min (sum of the rules' walls, one job at a time)": True,  # 337 s
        "data half peak <= 8 GiB": True,  # 2,500 MiB
    }
    fabricate(tmp_path, targets_rss="1100.0")  # over 1 GiB
    write_benchmark(tmp_path / "benchmarks" / "sequences" / "sequences.tsv", (90.0, "800.0"))
    refs = json.loads((tmp_path / "references.json").read_text())
    refs["compare"]["protein"]["other_differences"] = 1
    (tmp_path / "references.json").write_text(json.dumps(refs))
    text = rehearsal.table(tmp_path)
    assert "MISS: annotation + sequences <= 2x gffread wall: 120.0 s / 50.0 s = 2.40x (CPU" in text
    assert "MISS: targets peak <= 1 GiB: 1100 MiB" in text
    assert "MISS: sequences identical to gffread's" in text
    assert (
        "PASS: targets <= 3x zcat | wc -l wall: 200.0 s / 100.0 s = 2.00x"
        " (CPU 200.0 s / 99.0 s = 2.02x)" in text
    )
    assert "| annotation | 30.0 | 30.0 | 1500 | 0.60× gffread (CPU 0.61×) |" in text
    assert "| genome_index | 12.0 | 12.0 | NA |  |" in text


def test_a_missing_rule_fails_the_total(tmp_path: Path) -> None:
    fabricate(tmp_path)
    (tmp_path / "benchmarks" / "dataset" / "gtex_v8.tsv").unlink()
    verdicts = dict(
        (name, met)
        for name, _, met in rehearsal.check_targets(
            rehearsal.read_benchmarks(tmp_path / "benchmarks"),
            json.loads((tmp_path / "references.json").read_text()),
        )
    )
    assert verdicts["data half <= 45 min (sum of the rules' walls, one job at a time)"] is False
    assert "| dataset | not run |" in rehearsal.table(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason=f"{SNAKEMAKE} missing")
def test_overlay_resolves_the_data_half_in_the_scratch_folder(tmp_path: Path) -> None:
    """The rehearsal's own command, dry: the six data rules and nothing else, their inputs
    the generated files under --directory, their outputs and benchmarks there too."""
    for path in rehearsal.INPUTS.values():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    command = rehearsal.snakemake_command(tmp_path, "-n")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = {job["rule"]: job for job in parse_dry_run(done.stdout)}
    assert sorted(jobs) == sorted(rehearsal.RULES)
    assert jobs["annotation"]["input"] == rehearsal.INPUTS["gtf"]
    assert jobs["genome_index"]["output"] == rehearsal.INPUTS["genome"] + ".fai"
    assert rehearsal.INPUTS["gct"] in jobs["targets"]["input"]
    assert jobs["dataset"]["output"] == "results/dataset/gtex_v8.parquet"
    for rule, job in jobs.items():
        assert job["benchmark"].startswith(f"benchmarks/{rule}/"), job
    assert not (tmp_path / "results").exists()  # a dry run
