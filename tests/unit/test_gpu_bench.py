"""bench/gpu.py at tiny size on the CPU: every section runs and records what docs/benchmarks.md
reads from it, so the script a GPU session runs has not rotted."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gpu_main():
    """bench/gpu.py's main in this process, the torch thread count put back afterwards
    (``--tiny`` sets one thread; the training tests after this file compare runs in this
    process with runs in subprocesses, whose float sums depend on the thread count)."""
    import torch

    threads = torch.get_num_threads()
    yield _gpu_module().main
    torch.set_num_threads(threads)


def _gpu_module():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench/gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def refused_before_running(gpu_main, argv, out, capsys, message: str) -> None:
    """``argv`` stops bench/gpu.py at option checking: nothing written to ``out``, ``message``
    on stderr (a typo costs no device time)."""
    with pytest.raises(SystemExit):
        gpu_main(argv)
    assert not out.exists()
    assert message in capsys.readouterr().err


def test_gpu_bench_runs_every_section_at_tiny_size(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu.py"), "--tiny", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(out.read_text())
    # the versions the run imported, beside torch's (a device image may hold other ones)
    assert result["packages"]["pytorch-lightning"] == importlib.metadata.version(
        "pytorch-lightning"
    )
    sections = result["sections"]
    assert set(sections) == {
        "reference",
        "embed",
        "train_cache",
        "loader",
        "finetune",
        "projection",
    }
    gpu = _gpu_module()
    for name in gpu.ENCODERS:
        for precision in ("fp32", "bf16"):
            (entry,) = [
                v for k, v in sections["embed"].items() if k.startswith(f"{name}_{precision}_b")
            ]
            assert "error" not in entry, entry
            assert entry["seq_per_s_forward"] > 0 and entry["seq_per_s_path"] > 0
            assert entry["tflop_per_seq"] >= 0 and entry["batch"] >= 1
        assert 0 <= sections["embed"][f"{name}_bf16_vs_fp32"]["max_rel_diff"] < 0.05
        # the compiled rows: skipped on a CPU, with the reason in the JSON
        (compiled,) = [v for k, v in sections["embed"].items() if k.startswith(f"{name}_bf16c_b")]
        assert compiled["skipped"] == gpu.COMPILE_CPU_SKIP and "seq_per_s_forward" not in compiled
    for entry in [*sections["train_cache"].values(), *sections["finetune"].values()]:
        assert "error" not in entry and entry["steps_per_s"] > 0, entry
    loader = sections["loader"]
    assert set(loader) == {"steps_alone", "epoch_workers0", "epoch_workers0_prefetch2"}
    reference = loader.pop("steps_alone")
    assert reference["batches"] > 1 and reference["steps_s"] > 0
    assert reference["device_s"] is None  # no GPU activity to sum on a CPU
    assert "step_share" in result["loader_ratios"]
    for row in loader.values():
        # every row against the one reference timed before any loader existed
        assert row["batches"] == reference["batches"]
        assert row["steps_alone_s"] == reference["steps_s"]
        share = min(reference["steps_s"] / row["epoch_s"], 1)  # of the rounded figures
        # the bench divides by the unrounded epoch: epoch_s's rounding (0.0005 s) moves the
        # share by share x 0.0005 / epoch_s (about 0.01 at a 0.05-s tiny epoch, which a fixed
        # 0.002 missed on a fast machine), and the share is rounded to 0.0005
        bound = 0.0005 + 1.05 * share * 0.0005 / (row["epoch_s"] - 0.0005)
        assert row["step_share"] == pytest.approx(share, abs=bound)
        assert 0 < row["step_share"] <= 1 and row["gpu_busy"] is None
    hours = sections["projection"]["gpu_hours"]
    assert hours["total_cached_path"] > 0
    assert any(k.startswith("train_ablation_grid_") for k in hours)
    assert result["wall_s"] > 0 and result["tiny"] is True


def test_best_rate_prefers_compiled_then_bf16_autocast_and_the_fastest_batch():
    gpu = _gpu_module()
    embed = {
        "esm2_fp32_b16": {"seq_per_s_path": 50.0},
        "esm2_bf16_b16": {"seq_per_s_path": 70.0},
        "esm2_bf16_b32": {"seq_per_s_path": 80.0},
        "esm2_bf16w_b32": {"seq_per_s_path": 99.0},  # bf16 weights: not what rule embed runs
        "esm2_bf16_vs_fp32": {"max_rel_diff": 0.01},
        "enformer_fp32_b4": {"seq_per_s_path": 17.0},
        "enformer_bf16_b4": {"error": "OutOfMemoryError"},
    }
    assert gpu.best_rate(embed, "esm2") == 80.0
    assert gpu.best_rate(embed, "enformer") == 17.0
    assert gpu.best_rate(embed, "borzoi") is None
    # compiled rows, where measured, are what config.yaml's rule embed runs
    embed["esm2_bf16c_b32"] = {"seq_per_s_path": 600.0}
    embed["enformer_bf16c_b8"] = {"skipped": "budget"}
    assert gpu.best_rate(embed, "esm2") == 600.0
    assert gpu.best_rate(embed, "enformer") == 17.0


def test_peak_lookup_names_the_pcie_h100_apart_from_the_sxm():
    gpu = _gpu_module()
    assert gpu.peak_for("NVIDIA H100 PCIe") == 756e12
    assert gpu.peak_for("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu.peak_for("NVIDIA H200") == 989.4e12
    assert gpu.peak_for("Some GPU") is None
    # a variant's name holds its family's, not its peak: no guess from a substring
    for variant in ("NVIDIA H200 NVL", "NVIDIA H100 NVL", "NVIDIA A100-SXM4-80GB", "H100"):
        assert gpu.peak_for(variant) is None, variant


def test_an_unknown_gpu_needs_peak_tflops_before_anything_runs(tmp_path, capsys, monkeypatch):
    gpu = _gpu_module()
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200 NVL")
    out = tmp_path / "gpu.json"
    with pytest.raises(SystemExit):
        gpu.main(["--out", str(out), "--sections", "reference"])
    err = capsys.readouterr().err
    assert "'NVIDIA H200 NVL'" in err and "--peak-tflops" in err
    assert not out.exists()  # nothing ran, nothing written
    with pytest.raises(SystemExit):
        gpu.main(["--out", str(out), "--peak-tflops", "0"])
    assert not out.exists()


def test_compiled_rows_time_compile_apart_from_the_steady_forward():
    # What the bf16c rows run on a GPU, here on the CPU through dynamo's "eager" backend
    # (capture without inductor's code generation: seconds): a tiny ESM-2, batch 2.
    import numpy as np
    import torch

    from isoflow.model.encoders import build_encoder

    gpu = _gpu_module()
    encoder = build_encoder("esm2", {"source": "tiny", "finetune_last": 0}).eval()
    seqs = gpu.random_sequences("esm2", 2, 20, np.random.default_rng(0))
    tokens = encoder.tokenize(seqs)
    with torch.no_grad():
        want, _ = encoder(**tokens)
    result = {}
    device = torch.device("cpu")
    got = gpu.compiled_forward(result, encoder, tokens, seqs, device, None, True, "eager")
    torch.testing.assert_close(got, want)
    assert encoder._compiled_call_impl is None  # eager again afterwards
    assert result["compile_s"] > 0 and result["backend"] == "eager"
    # ESM-2's forward has graph breaks: several graphs, all from the first call
    assert result["graphs"] == result["graphs_first_call"] >= 1
    assert result["seq_per_s_forward"] > 0 and result["seq_per_s_path"] > 0
    assert result["tflop_per_seq"] >= 0 and result["mfu_forward"] is None  # no peak on a CPU


def test_encoders_option_picks_and_orders_the_embed_rows(tmp_path, capsys, gpu_main):
    # A device run puts the rows it most wants first, so a budget cut by a long compile
    # drops the others; an unknown name stops before anything runs.
    out = tmp_path / "gpu.json"
    gpu_main(
        [
            "--tiny",
            "--out",
            str(out),
            "--sections",
            "embed",
            "--encoders",
            "esm2_sdpa,esm2",
            "--precisions",
            "bf16",
        ]
    )
    embed = json.loads(out.read_text())["sections"]["embed"]
    assert list(embed) == ["esm2_sdpa_bf16_b2", "esm2_bf16_b2"]
    with pytest.raises(SystemExit):
        gpu_main(["--tiny", "--out", str(out), "--encoders", "esm2,esm3"])
    assert "--encoders: unknown esm3" in capsys.readouterr().err


def test_compiled_fine_tuning_rows_and_options_checked_before_anything_runs(
    tmp_path, capsys, gpu_main
):
    # the compiled fine-tuning rows through dynamo's "eager" backend (capture only: seconds),
    # one case, in the order asked; a bad option stops before the reference section runs
    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "finetune"]
    gpu_main(
        [
            *args,
            "--finetune-cases",
            "enformer_end_to_end",
            "--finetune-modes",
            "eager,compiled",
            "--compile-backend",
            "eager",
        ]
    )
    rows = json.loads(out.read_text())["sections"]["finetune"]
    assert list(rows) == ["enformer_end_to_end", "enformer_end_to_end_compiled"]
    compiled = rows["enformer_end_to_end_compiled"]
    assert compiled["backend"] == "eager" and compiled["compile_s"] > 0
    assert compiled["steps_per_s"] > 0
    assert compiled["tflop_per_step"] == rows["enformer_end_to_end"]["tflop_per_step"]
    out.unlink()
    for bad in (["--finetune-modes", "jit"], ["--finetune-cases", "nt_only"]):
        with pytest.raises(SystemExit):
            gpu_main(["--tiny", "--out", str(out), *bad])
        assert not out.exists()  # nothing ran, nothing written
    assert "--finetune-cases: nt_only" in capsys.readouterr().err


def test_finetune_batch_scale_multiplies_each_case_and_is_checked(tmp_path, capsys, gpu_main):
    # MFU against batch size: the case's batch times the scale (Enformer end to end: 1 at tiny
    # size), and the FLOPs per step grow with it; a scale under 1 stops before anything runs
    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "finetune"]
    args += ["--finetune-cases", "enformer_end_to_end"]
    gpu_main(args)
    one = json.loads(out.read_text())["sections"]["finetune"]["enformer_end_to_end"]
    gpu_main([*args, "--finetune-batch-scale", "3"])
    three = json.loads(out.read_text())["sections"]["finetune"]["enformer_end_to_end"]
    assert (one["batch"], three["batch"]) == (1, 3)
    assert three["tflop_per_step"] > 2 * one["tflop_per_step"]  # rounded to 4 decimals
    out.unlink()
    refused_before_running(
        gpu_main, [*args, "--finetune-batch-scale", "0"], out, capsys, "--finetune-batch-scale"
    )


def test_finetune_checkpointing_counts_the_models_flops_not_the_recomputation(tmp_path, gpu_main):
    # with --finetune-checkpointing the encoders' blocks run twice in a step: the row's MFU
    # counts the model's FLOPs (one sequence's uncheckpointed step times the batch, exact
    # for inputs of one length) and tflop_executed_per_step what ran, recomputation included
    gpu = _gpu_module()
    gpu.TINY = True
    import numpy as np
    import torch

    device = torch.device("cpu")
    rng = np.random.default_rng(1)
    encoders, raw = {}, {}
    for modality, name in {"rna": "nucleotide_transformer", "protein": "esm2"}.items():
        encoders[modality] = gpu.build_encoder(name, True).trainable_last(-1)
        raw[modality] = gpu.random_sequences(name, 4, gpu.INPUTS[name]["tiny"], rng)
    model = gpu._isoformer({"dna": 16}, encoders).train()
    raw |= gpu._cached_inputs(4, {"dna": 64}, {"dna": 16}, device)
    tokens = model.tokenize(raw, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    target = torch.randn(4, 30)

    whole = gpu.count_flops(lambda: gpu.train_step(model, optimizer, tokens, target, device))
    one = gpu.count_flops(
        lambda: gpu.train_step(model, optimizer, gpu._rows(tokens, 1), target[:1], device)
    )
    assert one * 4 == whole
    for encoder in encoders.values():
        encoder.checkpoint_blocks()
    executed = gpu.count_flops(lambda: gpu.train_step(model, optimizer, tokens, target, device))
    assert executed > 1.1 * whole

    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "finetune", "--finetune-checkpointing"]
    gpu_main([*args, "--finetune-cases", "nt_esm2_trainable"])
    row = json.loads(out.read_text())["sections"]["finetune"]["nt_esm2_trainable"]
    assert row["gradient_checkpointing"] is True
    assert row["tflop_executed_per_step"] >= row["tflop_per_step"] > 0


def test_loader_compile_rows_and_option_checked_before_anything_runs(tmp_path, capsys, gpu_main):
    # the cached epoch with the model through torch.compile (dynamo's "eager" backend here:
    # capture only, seconds; on a GPU inductor's reduce-overhead mode, CUDA graphs), keyed by
    # the mode beside the eager rows; an unknown mode stops before anything runs
    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "loader", "--compile-backend", "eager"]
    gpu_main([*args, "--loader-compile", "eager,reduce-overhead"])
    rows = json.loads(out.read_text())["sections"]["loader"]
    assert list(rows) == [
        "steps_alone",
        "epoch_workers0",
        "epoch_workers0_prefetch2",
        "steps_alone_reduce-overhead",
        "epoch_workers0_prefetch2_reduce-overhead",
    ]
    compiled = rows["epoch_workers0_prefetch2_reduce-overhead"]
    assert compiled["compile_mode"] == "reduce-overhead" and compiled["backend"] == "eager"
    assert compiled["graphs"] >= 1  # the steps ran through dynamo
    assert rows["steps_alone_reduce-overhead"]["graphs"] >= 1  # its reference too
    assert compiled["steps_alone_s"] == rows["steps_alone_reduce-overhead"]["steps_s"]
    assert compiled["prefetch_batches"] == 2 and compiled["batches"] > 1
    assert 0 < compiled["step_share"] <= 1 and compiled["first_epoch_s"] > 0
    assert rows["epoch_workers0"]["compile_mode"] == "eager"
    # a mode that fails is an error row, and the run goes on
    bad = ["--tiny", "--out", str(out), "--sections", "loader", "--loader-prefetch", "0"]
    gpu_main([*bad, "--compile-backend", "no_such_backend", "--loader-compile", "default"])
    rows = json.loads(out.read_text())["sections"]["loader"]
    assert "no_such_backend" in rows["epoch_workers0_default"]["error"]
    out.unlink()
    refused_before_running(
        gpu_main,
        [*args, "--loader-compile", "cudagraphs"],
        out,
        capsys,
        "--loader-compile: cudagraphs",
    )


def test_loader_compile_rows_with_workers(tmp_path, capsys, gpu_main):
    # --loader-compile-workers: the compiled (or graph-step) epoch also fed by DataLoader
    # workers, with its mode's one reference; run 10's graph-step epoch was bound by the
    # 0-worker loader. A bad count stops before anything runs.
    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "loader", "--compile-backend", "eager"]
    args += ["--loader-prefetch", "2", "--loader-compile", "eager,default"]
    gpu_main([*args, "--loader-compile-workers", "0,2"])
    rows = json.loads(out.read_text())["sections"]["loader"]
    assert list(rows) == [
        "steps_alone",
        "epoch_workers0_prefetch2",
        "steps_alone_default",
        "epoch_workers0_prefetch2_default",
        "epoch_workers2_default",
    ]
    two = rows["epoch_workers2_default"]
    assert two["num_workers"] == 2 and two["prefetch_batches"] == 0
    assert two["compile_mode"] == "default" and two["graphs"] >= 0
    assert two["steps_alone_s"] == rows["steps_alone_default"]["steps_s"]
    assert two["batches"] == rows["epoch_workers0_prefetch2_default"]["batches"] > 1
    out.unlink()
    refused_before_running(
        gpu_main,
        [*args, "--loader-compile-workers", "0,x"],
        out,
        capsys,
        "--loader-compile-workers: 0,x",
    )


def test_workflow_section_trains_eager_and_with_cuda_graph(tmp_path, gpu_main):
    # --sections workflow: IsoFormerModule under a Lightning Trainer, config.yaml's settings,
    # train.cuda_graph false then true (on the CPU without capture, as the unit tests): an
    # epoch time per epoch, the same losses to float rounding, the graphs prepared
    import isoflow.lightning

    out = tmp_path / "gpu.json"
    gpu_main(["--tiny", "--out", str(out), "--sections", "workflow", "--workflow-epochs", "2"])
    rows = json.loads(out.read_text())["sections"]["workflow"]
    assert list(rows) == ["eager", "cuda_graph", "ratio"]
    eager, graph = rows["eager"], rows["cuda_graph"]
    assert graph["captured"] is False and graph["graphs"] >= 1
    assert graph["eager_steps"] >= 1  # 94 training rows in batches of 8: a partial last one
    for row in (eager, graph):
        assert len(row["epochs_s"]) == len(row["train_loss"]) == len(row["val_loss"]) == 2
    assert rows["ratio"]["train_loss_max_rel_diff"] < 1e-5
    assert rows["ratio"]["val_loss_max_rel_diff"] < 1e-5
    assert eager["train_loss"][1] != graph["train_loss"][0]  # the epochs differ: it trained
    assert isoflow.lightning.GRAPH_CAPTURE is True  # the bench left the module's switch alone


def test_loader_section_builds_its_caches_in_a_folder_of_its_own_inside_work(tmp_path, gpu_main):
    # bench_loader.build_inputs writes into a new empty folder only (it no longer reuses or
    # rebuilds caches in place): --work is where that folder is made, and a second run or a
    # folder with the user's files in it works and keeps those files
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("a user's file")
    for run in range(2):
        out = tmp_path / f"gpu{run}.json"
        gpu_main(["--tiny", "--out", str(out), "--sections", "loader", "--work", str(work)])
        assert "epoch_workers0" in json.loads(out.read_text())["sections"]["loader"]
        assert [p.name for p in work.iterdir()] == ["keep.txt"]


def test_finetune_flops_are_counted_on_one_sequence_before_timing(tmp_path, monkeypatch):
    # FlopCounterMode over the whole batch's step, after the timed steps, ran NT-v2 + ESM-2 at
    # batch 32 with checkpointing out of an H200's 139 GiB and lost the row's measured rate
    # (2026-11-28): every count is now one sequence's step (times the batch, exact for inputs
    # of one length), and each happens before the timing
    gpu = _gpu_module()
    gpu.TINY = True
    counted, order = [], []
    real_count, real_timed = gpu.count_flops, gpu.timed

    def count(fn):
        counted.append(fn.args[3].shape[0])  # train_step(model, optimizer, tokens, target, ...)
        order.append("count")
        return real_count(fn)

    def timed(*args, **kwargs):
        order.append("timed")
        return real_timed(*args, **kwargs)

    monkeypatch.setattr(gpu, "count_flops", count)
    monkeypatch.setattr(gpu, "timed", timed)
    rec = gpu.Recorder(tmp_path / "gpu.json", 0.0, 1e9)
    import torch

    threads = torch.get_num_threads()
    try:
        gpu.finetune_section(
            rec, torch.device("cpu"), True, None, only=("nt_esm2_trainable",), batch_scale=2,
            checkpointing=True,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    row = rec.data["sections"]["finetune"]["nt_esm2_trainable"]
    assert row["batch"] == 4 and "error" not in row
    assert counted == [1, 1]  # the model's FLOPs, then what runs with blocks recomputed
    assert order == ["count", "count", "timed"]
    assert row["tflop_executed_per_step"] >= row["tflop_per_step"] > 0


def test_loader_batch_gives_each_batch_size_its_own_rows(tmp_path, capsys, gpu_main):
    # how the GPU's share of a cached epoch grows with the batch: each --loader-batch size has
    # its own reference and epochs, the default's rows keep their names, the cache holds at
    # least 16 batches of the largest; a size under 1 or not a number stops before anything runs
    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "loader", "--loader-prefetch", "0"]
    gpu_main([*args, "--loader-batch", "8,12"])
    rows = json.loads(out.read_text())["sections"]["loader"]
    assert list(rows) == ["steps_alone", "epoch_workers0", "steps_alone_b12", "epoch_workers0_b12"]
    assert rows["epoch_workers0"]["batch"] == 8 and rows["epoch_workers0_b12"]["batch"] == 12
    assert rows["epoch_workers0_b12"]["transcripts"] == 16 * 12
    assert rows["epoch_workers0_b12"]["batches"] == 16 == rows["steps_alone_b12"]["batches"]
    out.unlink()
    for bad in ("0", "8,x"):
        refused_before_running(
            gpu_main, [*args, "--loader-batch", bad], out, capsys, f"--loader-batch: {bad}"
        )


def test_graph_step_pads_batches_to_one_shape_that_the_masks_leave_out(tmp_path, gpu_main):
    # --loader-compile graph-step captures the whole cached step as one CUDA graph, which
    # takes one input shape: batches are padded to the caches' fixed width with zero rows the
    # mask leaves out, so the model's output is the unpadded one (to float rounding); a batch
    # wider than the width is refused; off CUDA the mode is an error row and the run goes on
    import torch

    gpu = _gpu_module()
    gpu.TINY = True
    widths = {"dna": 16, "rna": 16, "protein": 16}
    inputs = gpu._cached_inputs(4, {"dna": 5, "rna": 9, "protein": 3}, widths, torch.device("cpu"))
    inputs["rna"][1][2, 4:] = False  # a shorter row inside the batch
    padded = gpu.pad_to_width(inputs, 12)
    for modality, (emb, mask) in padded.items():
        width = inputs[modality][0].shape[1]
        assert emb.shape[1] == 12 and mask.shape == emb.shape[:2]
        assert torch.equal(emb[:, :width], inputs[modality][0])
        assert torch.equal(mask[:, :width], inputs[modality][1])
        assert not mask[:, width:].any() and not emb[:, width:].any()
    torch.manual_seed(0)
    model = gpu._isoformer(widths).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(inputs), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rna: 9 rows, more than the width 8"):
        gpu.pad_to_width(inputs, 8)

    out = tmp_path / "gpu.json"
    args = ["--tiny", "--out", str(out), "--sections", "loader", "--loader-prefetch", "0"]
    gpu_main([*args, "--loader-compile", "eager,graph-step"])
    rows = json.loads(out.read_text())["sections"]["loader"]
    assert "CUDA only" in rows["epoch_workers0_graph-step"]["error"]
    assert rows["epoch_workers0"]["batches"] > 1
