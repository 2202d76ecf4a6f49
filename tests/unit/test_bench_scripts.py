"""bench/ scripts that `make bench` runs: they start on a fresh machine (scratch folders not
yet made) and answer --help."""

import shutil
import subprocess
import sys

import pytest

from helpers.paths import REPO


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
