"""bench/ scripts that `make bench` runs: they start on a fresh machine (scratch folders not
yet made) and answer --help."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers.paths import REPO, bench_module


def _bench(script: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


@pytest.mark.skipif(shutil.which("samtools") is None, reason="needs samtools")
def test_bench_windows_makes_its_scratch_folder(tmp_path):
    # `make bench` passes --scratch $(BENCH_TMP)/windows, a folder nobody made yet
    scratch = tmp_path / "bench" / "windows"
    done = _bench(
        "bench_windows.py",
        *("--genome-mb", "1", "--contigs", "1", "--windows", "4", "--repeats", "1"),
        *("--scratch", str(scratch)),
    )
    assert done.returncode == 0, done.stderr
    assert scratch.is_dir() and not list(scratch.iterdir())  # the temporary folder is gone


def test_gtex_layout_answers_help_and_checks_its_arguments(tmp_path):
    done = _bench("gtex_layout.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    done = _bench("gtex_layout.py", str(tmp_path / "out"), "many")
    assert done.returncode == 2 and "invalid int value" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_weights_digest_bench_reports_distinct_bytes_beside_hashed(tmp_path):
    # enformer-pytorch lists its stem and trunk under stem.* and _trunk.* both: the digest
    # hashes those weights twice, and the bench says how much of what it hashes is distinct
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from bench_weights_digest import unique_bytes
    finally:
        sys.path.remove(str(REPO / "bench"))
    from isoflow.model.encoders import random_encoder

    for name in ("enformer", "esm2"):
        encoder = random_encoder(name, {"source": "tiny"})
        tensors = list(encoder.state_dict().values())
        hashed = sum(t.numel() * t.element_size() for t in tensors)
        # the module's own parameters and buffers, each shared tensor once
        owned = [*encoder.parameters(), *encoder.buffers()]
        distinct = sum(t.numel() * t.element_size() for t in owned)
        assert unique_bytes(tensors) == distinct
        if name == "enformer":
            assert hashed > distinct
        else:
            assert hashed == distinct
    done = _bench("bench_weights_digest.py", "--tiny", "--encoders", "enformer", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    header, _, row = done.stdout.strip().splitlines()
    assert "MB hashed" in header and "MB distinct" in header and row.startswith("| enformer |")


def test_loader_benches_and_cpu_kernels_build_the_workflows_encoders():
    # bench_loader.py (and bench_prefetch.py, which reads its caches) at the widths the
    # workflow's encoders give, bench/gpu.py's; bench_cpu_kernels.py's NT is NT-v2 250M's
    # stand-in (gpu.SPECS), not the plain 173.3 M NT the class builds without it
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_cpu_kernels
        import bench_loader
        import gpu
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert {m: w for m, (_, w) in bench_loader.WIDTHS.items()} == gpu.WIDTHS
    for name in ("nucleotide_transformer", "esm2", "enformer"):
        spec = bench_cpu_kernels.spec_for(name)
        assert spec == {"source": "tiny", **gpu.SPECS.get(name, {})}
    assert "hparams" in bench_cpu_kernels.spec_for("nucleotide_transformer")


def test_scratch_in_leaves_the_users_folder_and_its_files(tmp_path):
    benchcommon = bench_module("benchcommon")
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("a user's file")
    with benchcommon.scratch_in(folder) as work:
        assert work.parent == folder and not list(work.iterdir())
        (work / "big.bin").write_bytes(b"x")
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    with benchcommon.scratch_in(tmp_path / "new" / "deeper") as work:  # made when missing
        assert work.is_dir()
    assert not list((tmp_path / "new" / "deeper").iterdir())


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("bench_provenance.py", ["--skip-hashing", "--skip-parse", "--scratch"]),
        ("bench_download.py", ["--mb", "1", "--repeats", "1", "--scratch"]),
    ],
)
def test_benches_keep_the_files_of_the_folder_they_are_given(tmp_path, script, args):
    # `--scratch results` wiped results/: each bench now works in a folder of its own inside
    if script == "bench_download.py" and shutil.which("curl") is None:
        pytest.skip("needs curl")
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("a user's file")
    done = _bench(script, *args, str(folder))
    assert done.returncode == 0, done.stderr
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "answers"),
    [
        (
            "bench_loader.py",
            ["--transcripts", "12", "--batch-size", "4", "--epochs", "1", "--repeat", "1"],
            "answers: the same batches",
        ),
        (
            "bench_prefetch.py",
            ["--transcripts", "12", "--batch-size", "4", "--step-ms", "1", "--repeat", "1"],
            "the same batches",
        ),
        ("bench_targets.py", ["--rows", "20", "--repeat", "1", "--old", "c40b196"], "answers: 2"),
    ],
)
def test_benches_that_extract_or_generate_leave_nothing_behind(tmp_path, script, args, answers):
    # bench_loader and bench_targets kept their generated data in --work (the loader's
    # caches rebuilt in place under --work results would have deleted the workflow's own)
    # and extracted the old tree into the system's temporary folder; now both live in a
    # folder of the bench's own inside --work, removed at the end, and each run says its
    # answers agree before it reports a time
    folder, system_tmp = tmp_path / "results", tmp_path / "tmp"
    folder.mkdir()
    system_tmp.mkdir()
    (folder / "keep.txt").write_text("a user's file")
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    done = _bench(script, *args, "--work", str(folder), env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert answers in done.stdout
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert not list(system_tmp.glob("isoflow*"))  # (torch keeps its own caches there)


def test_bench_loader_stops_when_the_loaders_batches_differ():
    bench_loader = bench_module("bench_loader")
    same = {"old": {"a" * 64}, "new": {"a" * 64}}
    assert bench_loader.same_batches(same).startswith("answers: the same batches")
    with pytest.raises(SystemExit, match="batches differ \\(2 distinct"):
        bench_loader.same_batches({"old": {"a" * 64}, "new": {"b" * 64}})
    with pytest.raises(SystemExit, match="batches differ"):  # two repeats of one loader
        bench_loader.same_batches({"old": {"a" * 64}, "new": {"a" * 64, "b" * 64}})


def test_bench_prefetch_hashes_every_byte_of_a_batch_and_stops_on_a_difference():
    import torch

    bench_prefetch = bench_module("bench_prefetch")

    def batch(value):
        emb = torch.zeros(2, 3, 4, dtype=torch.float16)
        emb[1, 2, 3] = value
        inputs = {"dna": (emb, torch.ones(2, 3, dtype=torch.bool))}
        return {"index": torch.arange(2), "target": torch.zeros(2, 30), "inputs": inputs}

    digests = {0: bench_prefetch.batches_sha256([batch(0.0)]), 1: None, 2: None}
    digests[1] = bench_prefetch.batches_sha256([batch(0.0)])
    digests[2] = bench_prefetch.batches_sha256([batch(0.5)])  # one embedding value differs
    assert digests[0] == digests[1] != digests[2]
    assert "at every depth" in bench_prefetch.same_answers({0: digests[0], 1: digests[1]})
    with pytest.raises(SystemExit, match="different batches"):
        bench_prefetch.same_answers(digests)


def test_bench_targets_holds_every_reader_to_the_same_answer(tmp_path):
    import numpy as np

    bench_targets = bench_module("bench_targets")
    ours = {"rows": 2, "targets_sha256": "t", "stats_sha256": "s", "tissues": 2}
    values = np.array([[0.0, 1.5], [2.25, 0.125]], dtype=np.float32)
    answers = {
        name: tmp_path / f"{i}.npy" for i, name in enumerate(["isoflow a", "isoflow b", "alt"])
    }
    np.save(answers["isoflow a"], values)
    np.save(answers["isoflow b"], values)
    np.save(answers["alt"], values.astype(np.float64) * (1 + 5e-7))  # within 1e-6 relative
    outputs = {"zcat FILE | wc -l": "5", "isoflow a": json.dumps(ours), "alt": "(2, 2)"}
    outputs["isoflow b"] = json.dumps(ours)
    assert "2 isoflow case(s) the same bytes" in bench_targets.check_answers(outputs, answers)
    with pytest.raises(SystemExit, match="zcat counted 6 lines"):
        bench_targets.check_answers({**outputs, "zcat FILE | wc -l": "6"}, answers)
    with pytest.raises(SystemExit, match="targets differ"):
        other = json.dumps({**ours, "stats_sha256": "x"})
        bench_targets.check_answers({**outputs, "isoflow b": other}, answers)
    np.save(answers["alt"], values.astype(np.float64) * (1 + 2e-6))
    with pytest.raises(SystemExit, match="alt: differs from isoflow's by 2e-06 relative"):
        bench_targets.check_answers(outputs, answers)
    np.save(answers["alt"], values[:1])
    with pytest.raises(SystemExit, match="alt: a \\(1, 2\\) matrix"):
        bench_targets.check_answers(outputs, answers)


def test_bench_explain_stops_when_the_two_paths_disagree():
    import numpy as np
    import pandas as pd

    from isoflow.bundle import CHECK_TOLERANCE

    bench_explain = bench_module("bench_explain")
    tissues = ["liver", "lung"]
    full = pd.DataFrame({"position": [1, 2], "alt": ["A", "C"], "liver": [0.5, np.nan]})
    full["lung"] = np.float32([0.25, np.nan])
    fast = full.copy()
    fast.loc[0, "liver"] += CHECK_TOLERANCE["float32"] / 2
    assert bench_explain.max_effect_difference(fast, full, tissues) == pytest.approx(
        CHECK_TOLERANCE["float32"] / 2
    )
    fast.loc[0, "liver"] = 0.5 + 2 * CHECK_TOLERANCE["float32"]
    with pytest.raises(SystemExit, match="effects differ by up to"):
        bench_explain.max_effect_difference(fast, full, tissues)
    fast = full.copy()
    fast.loc[1, "liver"] = 0.0  # scored on one path only
    with pytest.raises(SystemExit, match="unscored"):
        bench_explain.max_effect_difference(fast, full, tissues)
    fast = full.copy()
    fast.loc[1, "alt"] = "G"
    with pytest.raises(SystemExit, match="different rows"):
        bench_explain.max_effect_difference(fast, full, tissues)


def test_old_tree_children_import_only_their_own_tree(tmp_path):
    # an older tree without isoflow/loader.py (c40b196 has data.py) borrowed the checkout's
    # loader.py through the editable install's import finder, and failed on its imports
    benchcommon = bench_module("benchcommon")
    tree = tmp_path / "old"
    (tree / "isoflow").mkdir(parents=True)
    (tree / "isoflow" / "__init__.py").write_text("")
    with pytest.raises(SystemExit, match="No module named 'isoflow.loader'"):
        benchcommon.run_in_tree(tree, "import isoflow.loader")
    out = benchcommon.run_in_tree(tree, "import isoflow; print(isoflow.__file__)")
    assert out.strip() == str(tree.resolve() / "isoflow" / "__init__.py")
    out = benchcommon.run_in_tree(REPO, "import isoflow.loader; print(isoflow.loader.__file__)")
    assert out.strip() == str(REPO.resolve() / "isoflow" / "loader.py")


def test_tree_guard_refuses_a_module_from_another_tree(tmp_path):
    benchcommon = bench_module("benchcommon")
    tree, other = tmp_path / "old", tmp_path / "other"
    for root in (tree, other):
        (root / "isoflow").mkdir(parents=True)
    (other / "isoflow" / "extra.py").write_text("")
    guard = benchcommon.TreeGuard(tree.resolve())
    with pytest.raises(ImportError, match="extra would load from .*other"):
        guard.find_spec("isoflow.extra", [str(other / "isoflow")])
    assert guard.find_spec("json", None) is None  # not isoflow: not its business
    assert benchcommon.outside_tree(tree, "isoflow", str(tree / "isoflow" / "__init__.py")) is None


@pytest.mark.slow
def test_bench_train_cache_sets_a_passive_omp_wait_policy_before_torch_loads():
    # the workflow sets OMP_WAIT_POLICY=PASSIVE for every job; this bench did not, and its two
    # torch threads spun on a loaded machine, inflating the cache steps several fold
    code = (
        "import os, sys\nseen = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch' and not seen:\n"
        "            seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
        "sys.meta_path.insert(0, Spy())\n"
        f"sys.path.insert(0, {str(REPO / 'bench')!r})\n"
        "import bench_train_cache\nprint(seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['PASSIVE']"


def test_bench_train_epoch_compares_metrics_on_the_keys_both_sides_have(tmp_path):
    # metrics.json gained keys since the reference: the run's outputs were reported as not
    # identical although every metric both sides record was the same
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from bench_train_epoch import compare_outputs
    finally:
        sys.path.remove(str(REPO / "bench"))
    ref, cur = tmp_path / "reference0", tmp_path / "current0"
    for out in (ref, cur):
        out.mkdir()
        (out / "predictions.parquet").write_bytes(b"same")
        (out / "history.csv").write_text("epoch\n0\n")
    (ref / "metrics.json").write_text(json.dumps({"pearson": 0.5}))
    (cur / "metrics.json").write_text(json.dumps({"pearson": 0.5, "within_gene_tied": 3}))
    verdicts = compare_outputs(ref, cur)
    assert verdicts["predictions.parquet"] == verdicts["history.csv"] == "identical"
    assert verdicts["metrics.json"] == (
        "identical on the 1 shared keys; only current0 has ['within_gene_tied']"
    )
    (cur / "metrics.json").write_text(json.dumps({"pearson": 0.6}))
    (cur / "history.csv").write_text("epoch\n1\n")
    verdicts = compare_outputs(ref, cur)
    assert verdicts["metrics.json"] == "differs on ['pearson']"
    assert verdicts["history.csv"] == "DIFFERENT"


@pytest.mark.slow
def test_probe_batch_mates_counts_the_rows_a_grown_set_changes():
    """bench/probe_batch_mates.py (docs/rerun.md, why the store reuses whole caches): with no
    sequence inserted the two builds are the same batches, so no row differs; the output is
    one JSON line per encoder."""
    done = _bench("probe_batch_mates.py", "--sequences", "4", "--inserted", "0", cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["encoder"] for row in rows] == ["esm2", "nucleotide_transformer"]
    assert all(row["rows_differ"] == 0 and row["inserted"] == 0 for row in rows)


def test_bench_cache_size_check_0_gives_the_sizes_without_the_check():
    # --check 0 divided the written bytes by 0 sequences (ZeroDivisionError); now it skips
    # the check, and a negative count is refused by argparse
    done = _bench("bench_cache_size.py", "--transcripts", "199324", "--check", "0")
    assert done.returncode == 0, done.stderr
    enformer = (
        "| enformer | 3,072 | 896 | 64 | 128 | 1097.3 | 78.4 | 156.8 | not checked (786,432) |"
    )
    assert enformer in done.stdout
    # the default's three positional caches at GTEx's 199,324 transcripts
    assert "| Enformer + NT-v2 + ESM-2 | | | | | 1984.7 | 114.3 | 212.3 | |" in done.stdout
    assert done.stdout.count("not checked") == 5
    done = _bench("bench_cache_size.py", "--check", "-1")
    assert done.returncode == 2 and "must be 0 (no check) or more" in done.stderr


@pytest.mark.slow
def test_bench_locus_units_checks_the_map_before_timing_and_leaves_the_folder(tmp_path):
    # the bench's union-find reference is another computation of locus_units' definition:
    # it agrees at each distance and tells the distances apart (the check is not vacuous)
    bench = bench_module("bench_locus_units")
    from isoflow.splits import locus_units

    frame = bench.annotation(3000)
    for distance in (0, 1000):
        assert locus_units(frame, distance).to_dict() == bench.reference_units(frame, distance)
    assert locus_units(frame, 1000).to_dict() != bench.reference_units(frame, 0)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("a user's file")
    args = ["--genes", "2000", "--transcripts", "300", "--resamples", "20", "--repeat", "1"]
    done = _bench("bench_locus_units.py", *args, "--scratch", str(folder))
    assert done.returncode == 0, done.stderr
    assert "equal to the union-find, one side per locus, .npz identical" in done.stdout
    assert "locus map / write_run in the job" in done.stdout
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_bench_nt_parse_answers_help():
    done = _bench("bench_nt_parse.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "remote-code check" in done.stdout and "--repeats" in done.stdout
