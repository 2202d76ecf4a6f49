"""After the data changes, exactly the jobs that depend on it run again (README, "Rerunning").

The data half of the demo (demo_data .. dataset) runs once in a temporary working directory.
What must run again is computed from that DAG itself (a job depends on a file when the file, or
an output of a job that depends on it, is among its inputs), so the test stays right as rules
are added; a few fixed cases say what that means in the domain.
"""

import gzip
import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers.paths import REPO, SNAKEMAKE
from isoflow.errors import InputError
from isoflow.provenance import RECORD_DIR, check_records, record_job

DEMO_ANNOTATION = "resources/demo/annotation.gtf.gz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SNAKEMAKE.exists(), reason=f"{SNAKEMAKE} missing"),
]


def parse_jobs(text: str) -> list[dict]:
    """Jobs of a `snakemake -n` printout: rule, input and output file lists."""
    jobs: list[dict] = []
    for line in text.splitlines():
        start = re.fullmatch(r"(local)?rule (\S+):", line)
        if start:
            jobs.append({"rule": start[2], "input": [], "output": []})
        elif jobs and re.match(r"    (input|output): ", line):
            key, value = line.strip().split(": ", 1)
            jobs[-1][key] = value.split(", ")
    return jobs


def dependents(jobs: list[dict], changed: set[str]) -> Counter:
    """Rules (with counts) of the jobs that read a changed file or a dependent job's output."""
    changed, found = set(changed), []
    grew = True
    while grew:
        grew = False
        for job in jobs:
            if job not in found and changed & set(job["input"]):
                found.append(job)
                changed |= set(job["output"])
                grew = True
    return Counter(job["rule"] for job in found)


@pytest.fixture(scope="module")
def demo_data_half(tmp_path_factory: pytest.TempPathFactory):
    """Working directory where the demo's data half has run; runs snakemake there."""
    work = tmp_path_factory.mktemp("rerun")

    def snakemake(*args: str, overlays: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
        command = [SNAKEMAKE, "-s", REPO / "Snakefile", "-d", work, "--cores", "2"]
        command += [*args, "--configfile", REPO / "config" / "demo.yaml", *overlays]
        return subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)

    targets = listed_targets(snakemake)
    plan = snakemake(*targets, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    run = snakemake(*targets)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    return snakemake, targets, parse_jobs(plan.stdout), work


def listed_targets(snakemake) -> list[str]:
    """The data half's final files: rule `all`'s inputs under results/dataset, results/targets."""
    dag = snakemake("all", "-n")
    assert dag.returncode == 0, dag.stderr[-3000:]
    inputs = next(job["input"] for job in parse_jobs(dag.stdout) if job["rule"] == "all")
    targets = [path for path in inputs if re.match(r"results/(dataset|targets)/", path)]
    assert targets, inputs
    return targets


def scheduled(result: subprocess.CompletedProcess) -> Counter:
    assert result.returncode == 0, result.stderr[-3000:]
    return Counter(job["rule"] for job in parse_jobs(result.stdout))


def test_a_complete_run_leaves_nothing_to_do(demo_data_half) -> None:
    snakemake, targets, _, _ = demo_data_half
    assert scheduled(snakemake(*targets, "-n")) == Counter()


def test_forcing_targets_reruns_the_target_tables_and_what_follows(demo_data_half) -> None:
    snakemake, targets, plan, _ = demo_data_half
    target_jobs = [job for job in plan if job["rule"] == "targets"]
    expected = Counter(job["rule"] for job in target_jobs)
    expected += dependents(plan, {path for job in target_jobs for path in job["output"]})
    assert scheduled(snakemake(*targets, "-n", "-R", "targets")) == expected
    assert "dataset" in expected and "annotation" not in expected and "splits" not in expected


def change_annotation(path: Path) -> None:
    """A new file with the same GTF lines (new gzip header), newer than every output."""
    old = path.read_bytes()
    path.write_bytes(gzip.compress(gzip.decompress(old), mtime=int(time.time()) + 1))
    assert path.read_bytes() != old
    # Now, not later: a rerun finishing within a future mtime would leave its output older than
    # its input, which Snakemake fails as clock skew (a fast job start makes that likely).
    os.utime(path)


def test_touching_a_small_input_without_changing_it_reruns_nothing(demo_data_half) -> None:
    """Files under --max-checksum-file-size (1 MB) are compared by checksum, not mtime."""
    snakemake, targets, _, work = demo_data_half
    annotation = work / DEMO_ANNOTATION
    assert annotation.stat().st_size < 1_000_000
    before = annotation.stat().st_mtime
    os.utime(annotation, (time.time() + 5, time.time() + 5))
    try:
        assert scheduled(snakemake(*targets, "-n")) == Counter()
    finally:
        os.utime(annotation, (before, before))


@pytest.mark.parametrize("triggers", [[], ["--rerun-triggers", "mtime"]], ids=["default", "mtime"])
def test_a_changed_annotation_reruns_exactly_its_dependents(demo_data_half, triggers) -> None:
    snakemake, targets, plan, work = demo_data_half
    annotation = work / DEMO_ANNOTATION
    original, before = annotation.read_bytes(), annotation.stat().st_mtime
    change_annotation(annotation)
    try:
        expected = dependents(plan, {DEMO_ANNOTATION})
        assert scheduled(snakemake(*targets, "-n", *triggers)) == expected
        assert {"annotation", "sequences", "dataset"} <= set(expected)
        assert "demo_data" not in expected and "genome_index" not in expected
    finally:
        annotation.write_bytes(original)
        os.utime(annotation, (before, before))


def test_a_changed_copy_with_an_older_mtime_stops_with_the_touch_that_reruns_it(
    demo_data_half,
) -> None:
    """`cp -p`/`rsync -a` of a changed annotation that is older than the outputs: Snakemake
    alone reruns nothing (its checksums only excuse newer files); the provenance check stops
    with one line, and the `touch` it names reruns exactly the annotation's dependents."""
    snakemake, targets, plan, work = demo_data_half
    annotation = work / DEMO_ANNOTATION
    original, before = annotation.read_bytes(), annotation.stat().st_mtime_ns
    change_annotation(annotation)
    os.utime(annotation, ns=(before - 10**10, before - 10**10))  # older than every output
    try:
        stopped = snakemake(*targets, "-n")
        assert stopped.returncode != 0
        output = stopped.stdout + stopped.stderr  # Snakemake prints parse errors to stdout
        lines = [line for line in output.splitlines() if "content changed" in line]
        assert lines == [
            f"{DEMO_ANNOTATION}: content changed since it made "
            f"results/annotation/transcripts.parquet (rule annotation), but its mtime is not "
            f"newer than that output, so Snakemake would not rerun it; run "
            f"`touch {DEMO_ANNOTATION}` to rerun what depends on it"
        ], output[-3000:]
        os.utime(annotation)  # the touch it names
        assert scheduled(snakemake(*targets, "-n")) == dependents(plan, {DEMO_ANNOTATION})
    finally:
        annotation.write_bytes(original)
        os.utime(annotation, ns=(before, before))
    assert scheduled(snakemake(*targets, "-n")) == Counter()


STALE = "content changed since it made"


def stale_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if STALE in line]


def test_a_stale_input_stops_only_the_commands_whose_dag_reads_it(demo_data_half) -> None:
    """The check reads the records of the DAG's jobs that will not run anyway: commands
    without a DAG, --touch, targets that do not depend on the input, a -R that reruns the
    job, and records of jobs outside the workflow (a renamed run) never stop; --report stops."""
    snakemake, targets, plan, work = demo_data_half
    annotation = work / DEMO_ANNOTATION
    original, before = annotation.read_bytes(), annotation.stat().st_mtime_ns
    independent = [path for job in plan if job["rule"] == "genome_index" for path in job["output"]]
    assert independent and not dependents(plan, {DEMO_ANNOTATION})["genome_index"]
    change_annotation(annotation)
    os.utime(annotation, ns=(before - 10**10, before - 10**10))
    try:
        assert len(stale_lines(snakemake(*targets, "-n"))) == 1
        for args in (
            ["--unlock"],
            ["--list-rules"],
            ["--cleanup-metadata", independent[0]],
            [*independent, "-n"],
            [*targets, "-n", "-R", "annotation"],
            [*targets, "--touch"],
        ):
            result = snakemake(*args)
            assert result.returncode == 0 and not stale_lines(result), (args, result.stderr[-3000:])
        # the report is read as current: it stops like a run, and writes nothing
        report = snakemake(*targets, "--report", str(work / "report.html"))
        assert report.returncode != 0 and not (work / "report.html").exists()
        stopped = stale_lines(report)
        assert stopped and not any("warning: " in line for line in stopped), report.stderr[-3000:]
    finally:
        annotation.write_bytes(original)
        os.utime(annotation, ns=(before, before))
    assert scheduled(snakemake(*targets, "-n")) == Counter()


def test_a_report_after_a_params_edit_stops_and_writes_nothing(demo_data_half) -> None:
    """--report with an overlay that changes a param: the results on disk were made with
    other params, so the page would credit them to this config (rules/common.smk's
    `check_report_current`, docs/rerun.md); it stops naming the jobs due, and writes no page."""
    snakemake, targets, _, work = demo_data_half
    overlay = work / "valid_fraction.yaml"
    overlay.write_text("split: {valid_fraction: 0.2}\n")
    page = work / "edited_report.html"
    report = snakemake(*targets, "--report", str(page), overlays=(overlay,))
    assert report.returncode != 0 and not page.exists(), report.stderr[-3000:]
    assert "valid_fraction.yaml: " in report.stderr and "would run first" in report.stderr
    assert "splits (results/splits/locus.tsv): params changed: split.valid_fraction" in (
        report.stderr
    ), report.stderr[-3000:]


def test_a_split_key_the_scheme_does_not_read_reruns_nothing(demo_data_half) -> None:
    """The splits rule's params hold the split keys its scheme reads
    (`workflow.split_settings`): the held-out chromosomes under the demo's locus scheme, and
    the salt and fractions under the chrom scheme, change no split, so editing them plans no
    job (valid_chroms under locus planned the splits and everything after them)."""
    snakemake, targets, _, work = demo_data_half
    chroms = work / "chroms.yaml"
    chroms.write_text("split: {valid_chroms: [chr1], test_chroms: [chr2]}\n")
    assert scheduled(snakemake(*targets, "-n", overlays=(chroms,))) == Counter()
    chrom_split = "results/splits/chrom.tsv"
    as_chrom, moved = work / "as_chrom.yaml", work / "moved.yaml"
    as_chrom.write_text("split: {scheme: chrom}\n")
    moved.write_text("split: {scheme: chrom, salt: other, valid_fraction: 0.3}\n")
    try:
        built = snakemake(chrom_split, overlays=(as_chrom,))
        assert built.returncode == 0, built.stderr[-3000:]
        assert scheduled(snakemake(chrom_split, "-n", overlays=(moved,))) == Counter()
    finally:
        (work / chrom_split).unlink(missing_ok=True)


def test_an_orphan_record_with_a_stale_input_is_ignored(demo_data_half, monkeypatch) -> None:
    """A record of a job the workflow no longer has (a renamed run, another config)."""
    snakemake, targets, _, work = demo_data_half
    monkeypatch.chdir(work)
    Path("old_input.txt").write_text("first")
    Path("results/runs/renamed").mkdir(parents=True, exist_ok=True)
    Path("results/runs/renamed/metrics.json").write_text("{}")
    record = record_job("train", ["old_input.txt"], ["results/runs/renamed/metrics.json"])
    assert record.parent == Path(RECORD_DIR)
    Path("old_input.txt").write_text("other")  # same size, mtime set back
    os.utime("old_input.txt", ns=(0, 0))
    with pytest.raises(InputError):  # it is stale
        check_records()
    try:
        result = snakemake(*targets, "-n")
        assert not stale_lines(result)
        assert scheduled(result) == Counter()
    finally:
        record.unlink()


def test_an_unchanged_input_moved_into_the_past_neither_stops_nor_reruns(demo_data_half) -> None:
    """`touch -d past` with the same content: hashed once at parse, then a stat again."""
    snakemake, targets, _, work = demo_data_half
    annotation = work / DEMO_ANNOTATION
    before = annotation.stat().st_mtime_ns
    os.utime(annotation, ns=(before - 10**10, before - 10**10))
    try:
        assert scheduled(snakemake(*targets, "-n")) == Counter()
    finally:
        os.utime(annotation, ns=(before, before))
    assert scheduled(snakemake(*targets, "-n")) == Counter()


def test_rerunning_after_a_change_converges(demo_data_half) -> None:
    snakemake, targets, plan, work = demo_data_half
    change_annotation(work / DEMO_ANNOTATION)
    rerun = snakemake(*targets)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert scheduled(snakemake(*targets, "-n")) == Counter()


# --- config edits: only the jobs whose params hold the edited keys run again ----------------

SMALL_DEMO = """\
seeds: [0]
experiments:
  - {modalities: [dna], aggregator: cross_attention}
  - {modalities: [rna], aggregator: cross_attention}
  - {modalities: [dna, rna, protein], aggregator: cross_attention}
  - {modalities: [dna, rna, protein], aggregator: cross_attention, pooling: positional}
train: {max_epochs: 2}
models: {export: [dna+rna+protein_enformer_cross_attention_s0]}
constructs: {table: null}
explain: null
design: null
finetune: null
"""
BUNDLE = "results/models/dna+rna+protein_enformer_cross_attention_s0"


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory):
    """The demo with one seed of four runs (each modality's caches, both poolings: rule
    embed_shared), two epochs, trained and exported; runs a dry run there with an overlay."""
    work = tmp_path_factory.mktemp("edits")
    (work / "small.yaml").write_text(SMALL_DEMO)

    def snakemake(overlay: str | None, *args: str) -> subprocess.CompletedProcess:
        configs = [REPO / "config" / "demo.yaml", work / "small.yaml"]
        if overlay is not None:
            (work / "edit.yaml").write_text(overlay)
            configs.append(work / "edit.yaml")
        command = [SNAKEMAKE, "-s", REPO / "Snakefile", "-d", work, "--cores", "2", *args]
        command += ["--configfile", *configs, "--", BUNDLE]
        return subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=900)

    built = snakemake(None)
    assert built.returncode == 0, (built.stdout + built.stderr)[-5000:]
    return snakemake


def scheduled_jobs(result: subprocess.CompletedProcess) -> Counter:
    """(rule, wildcards) of each job a dry run schedules."""
    assert result.returncode == 0, result.stderr[-3000:]
    jobs, current = Counter(), None
    for line in result.stdout.splitlines():
        start = re.fullmatch(r"(local)?rule (\S+):", line)
        if start:
            current = start[2]
            jobs[(current, "")] += 1
        elif current and line.startswith("    wildcards: "):
            jobs[(current, "")] -= 1
            jobs[(current, line.split(": ", 1)[1])] += 1
    return +jobs


def test_editing_an_encoder_no_run_reads_reruns_nothing(small_demo) -> None:
    """Borzoi and nt_dna are configured but read by no run: the embed, train and export
    params hold only the encoders they read (rules/encoders.smk, workflow.rule_settings)."""
    assert scheduled_jobs(small_demo(None, "-n")) == Counter()
    edit = "encoders:\n  borzoi: {pool_to: 4}\n  nt_dna: {pool_to: 4, finetune_last: 1}\n"
    assert scheduled_jobs(small_demo(edit, "-n")) == Counter()


def test_the_rna_limits_rebuild_the_rna_caches_and_what_reads_them(small_demo) -> None:
    """rna.max_nt shapes only the RNA encoder's caches: the DNA and protein caches (and the
    data half) stay; the train job reads the RNA caches, so it and the export run again."""
    assert scheduled_jobs(small_demo("rna: {max_nt: 600}\n", "-n")) == Counter(
        {
            ("embed_shared", "encoder=nucleotide_transformer"): 1,
            ("train", ""): 1,
            ("export_model", "run=dna+rna+protein_enformer_cross_attention_s0"): 1,
        }
    )
    assert scheduled_jobs(small_demo("encoders:\n  enformer: {pool_to: 4}\n", "-n")) == Counter(
        {
            ("embed_shared", "encoder=enformer"): 1,
            ("train", ""): 1,
            ("export_model", "run=dna+rna+protein_enformer_cross_attention_s0"): 1,
        }
    )
