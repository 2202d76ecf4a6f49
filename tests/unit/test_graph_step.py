"""``isoflow.graph_step`` and ``train.cuda_graph``: on the CPU (CI has no GPU) through
``capture=False`` / ``isoflow.lightning.GRAPH_CAPTURE = False``, which run the same warm-up,
restore and step on the same static tensors without capturing a graph."""

import copy
import importlib

import pandas as pd
import pytest
import torch
import yaml
from test_train import FAST, cache_config, tiny_caches
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeCopyMode,
    FakeTensorMode,
)

import isoflow.lightning
import isoflow.model.aggregators
from helpers.paths import REPO
from helpers.training import make_dataset, stopped_after_epoch
from isoflow.config import check_config
from isoflow.errors import InputError
from isoflow.graph_step import GraphStep, bucket_width, pad_to_width
from isoflow.lightning import lr_factor, parameter_groups
from isoflow.model.aggregators import AGGREGATORS, TokenStandardizer
from isoflow.model.isoformer import IsoFormer
from isoflow.train import run_experiment

DIMS = {"rna": 6, "protein": 5}


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graph")
    path, _ = make_dataset(folder)
    return path, tiny_caches(path, folder)


def _model(dropout=0.1):
    torch.manual_seed(0)
    return IsoFormer(
        n_tissues=3, dims=DIMS, aggregator="cross_attention", d_model=16, heads=2,
        dropout=dropout,
    ).train()  # fmt: skip


def _batch(rows, widths, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for m, width in widths.items():
        mask = torch.ones(rows, width, dtype=torch.bool)
        mask[0, width // 2 :] = False  # a shorter entry
        emb = torch.randn(rows, width, DIMS[m], generator=g) * mask.unsqueeze(-1)
        inputs[m] = (emb, mask)
    return inputs, torch.randn(rows, 3, generator=g)


def _adamw(model, lr=1e-2):
    return torch.optim.AdamW(model.parameters(), lr=torch.tensor(lr), foreach=False)


def _state(model, optimizer):
    tensors = {f"p.{k}": v.clone() for k, v in model.state_dict().items()}
    for i, state in enumerate(optimizer.state.values()):
        tensors |= {f"o{i}.{k}": v.clone() for k, v in state.items()}
    return tensors


def test_warm_up_leaves_weights_statistics_and_optimizer_state_as_they_were():
    # capturing needs warm-up steps that train: the first real step must start from the
    # weights, standardiser statistics, AdamW moments and RNG an eager one would
    model = _model()
    optimizer = _adamw(model)
    inputs, target = _batch(4, {"rna": 8, "protein": 8})
    eager_model = copy.deepcopy(model)
    eager_opt = _adamw(eager_model)
    for step in range(3):  # a step before the first key: AdamW state exists already
        step_fn = GraphStep(model, optimizer, torch.device("cpu"), warmup=3, capture=False)
        if step == 0:
            before = _state(model, optimizer)
            saved = step_fn._snapshot()
            for _ in range(3):
                step_fn._step(inputs, target)
            assert not torch.equal(model.head.weight, before["p.head.weight"])
            step_fn._restore(saved)
            after = _state(model, optimizer)
            assert before.keys() <= after.keys()
            for key, value in after.items():  # created by the warm-up: a fresh AdamW's
                assert torch.equal(value, before.get(key, torch.zeros_like(value))), key
        torch.manual_seed(step)
        eager_loss = GraphStep(eager_model, eager_opt, torch.device("cpu"), warmup=0,
                               capture=False)._step(inputs, target)  # fmt: skip
        torch.manual_seed(step)
        loss = step_fn(inputs, target)  # a new key each time: warm-up, restore, then the step
        assert torch.equal(loss, eager_loss)
        for (name, a), b in zip(
            model.state_dict().items(), eager_model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name


def test_a_float_lr_is_refused_and_a_tensor_lr_follows_the_schedule():
    # a graph bakes a float LR in at capture; LambdaLR fills a tensor LR in place
    model = _model()
    float_lr = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="lr is a float"):
        GraphStep(model, float_lr, torch.device("cpu"), capture=False)
    optimizer = _adamw(model)
    lr = optimizer.param_groups[0]["lr"]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, 2, 6, "cosine"))
    step = GraphStep(model, optimizer, torch.device("cpu"), capture=False)
    for i in range(6):
        step(*_batch(4, {"rna": 8, "protein": 8}, seed=i))
        schedule.step()
        assert optimizer.param_groups[0]["lr"] is lr  # the tensor the graph recorded
        assert lr.item() == pytest.approx(1e-2 * lr_factor(i + 1, 2, 6, "cosine"), rel=1e-6)


def test_widths_pad_to_buckets_that_the_masks_leave_out():
    assert [bucket_width(w) for w in (1, 8, 9, 17, 64)] == [8, 8, 16, 32, 64]
    assert bucket_width(9, cap=12) == 12 and bucket_width(20, cap=12) == 20
    inputs, _ = _batch(4, {"rna": 5, "protein": 11})
    padded = pad_to_width(inputs, {"rna": 8, "protein": 16})
    for m, (emb, mask) in padded.items():
        width = inputs[m][0].shape[1]
        assert torch.equal(emb[:, :width], inputs[m][0])
        assert not mask[:, width:].any() and not emb[:, width:].any()
    model = _model().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(inputs), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="protein: 11 rows, more than the width 8"):
        pad_to_width(inputs, 8)
    # one graph per bucket set; the step on padded inputs trains as on unpadded ones
    step = GraphStep(_model(0.0), _adamw(_model(0.0)), torch.device("cpu"), capture=False)
    assert step.widths(inputs) == {"rna": 8, "protein": 16}
    step(*_batch(4, {"rna": 5, "protein": 11}))
    step(*_batch(4, {"rna": 7, "protein": 9}, seed=1))
    step(*_batch(4, {"rna": 9, "protein": 9}, seed=2))
    assert step.graphs == 2 and step.eager_steps == 0


def test_a_batch_of_another_row_count_runs_eager():
    model = _model(0.0)
    step = GraphStep(model, _adamw(model), torch.device("cpu"), rows=4, capture=False)
    step(*_batch(4, {"rna": 8, "protein": 8}))
    grads = [p.grad for p in model.parameters()]
    step(*_batch(3, {"rna": 8, "protein": 8}))
    assert step.eager_steps == 1 and step.graphs == 1
    # the eager step used the same gradient tensors the graphs recorded
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))


OPTIMISED = {"grad_clip": 0.05, "warmup_steps": 2, "schedule": "cosine", "max_epochs": 3}


def test_cuda_graph_path_trains_as_lightnings_own(cached, tmp_path, monkeypatch):
    # the manual-optimisation step (clipping, scheduler, warm-up undone) against Lightning's
    # automatic one: the same history to float rounding (tensor LR, foreach vs per tensor)
    monkeypatch.setattr(isoflow.lightning, "GRAPH_CAPTURE", False)
    path, caches = cached
    experiment = {"modalities": FAST, "seed": 1}
    histories = []
    for name, graph in (("auto", False), ("graph", True)):
        config = cache_config(**OPTIMISED, cuda_graph=graph)
        run_experiment(config, experiment, path, tmp_path / name, cache_dirs=caches)
        histories.append(pd.read_csv(tmp_path / name / "history.csv"))
    assert len(histories[0]) == 3
    pd.testing.assert_frame_equal(histories[0], histories[1], rtol=1e-5)
    # 8 per batch: the epochs' last batches are partial and ran eager
    assert len(pd.read_parquet(path).query("split == 'train'")) % 8


def test_a_cuda_graph_run_resumes_as_an_uninterrupted_one(cached, tmp_path, monkeypatch):
    # as test_checkpoints' resume tests: a run stopped after epoch 1, its outputs deleted and
    # run again, resumes from last.ckpt (optimiser state, tensor LR and schedule included)
    # and writes the uninterrupted run's files byte for byte
    monkeypatch.setattr(isoflow.lightning, "GRAPH_CAPTURE", False)
    path, caches = cached
    experiment = {"modalities": FAST, "seed": 1}
    config = cache_config(**OPTIMISED, cuda_graph=True, patience=50)
    run_experiment(config, experiment, path, tmp_path / "whole", cache_dirs=caches)
    with stopped_after_epoch(monkeypatch, 1):
        run_experiment(config, experiment, path, tmp_path / "cut", cache_dirs=caches)
    outputs = ("metrics.json", "history.csv", "predictions.parquet")
    for name in outputs:
        (tmp_path / "cut" / name).unlink()
    run_experiment(config, experiment, path, tmp_path / "cut", cache_dirs=caches)
    for name in outputs:
        whole = (tmp_path / "whole" / name).read_bytes()
        assert (tmp_path / "cut" / name).read_bytes() == whole, name


def test_cuda_graph_off_cuda_is_one_line(cached, tmp_path):
    path, caches = cached
    config = cache_config(max_epochs=1, cuda_graph=True)
    with pytest.raises(InputError, match=r"train\.cuda_graph: true, but the run trains on cpu"):
        run_experiment(config, {"modalities": FAST}, path, tmp_path / "run", cache_dirs=caches)


@pytest.mark.parametrize(
    ("train", "model", "message"),
    [
        ({"compile": True}, {}, "train.compile: true both take the step"),
        ({"devices": 2}, {}, "not train.devices: 2"),
        ({"strategy": "ddp"}, {}, "train.strategy: ddp"),
        ({"precision": "16-mixed"}, {}, "no fp16 loss scaling"),
        ({}, {"cached_modalities": ["rna"]}, "reads protein raw"),
    ],
)
def test_cuda_graph_config_errors_are_one_line(train, model, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["experiments"] = [{"modalities": ["rna", "protein"]}]
    config["model"]["cached_modalities"] = ["rna", "protein"]
    config["train"]["cuda_graph"] = True
    check_config(config)  # every modality cached, one device: fine
    config["train"].update(train)
    config["model"].update(model)
    with pytest.raises(InputError) as error:
        check_config(config)
    text = str(error.value)
    assert "\n" not in text and text.startswith("config:train.cuda_graph: true")
    assert message in text
    config["train"]["cuda_graph"] = False
    check_config(config)


# --- What a CUDA graph cannot capture, seen on the CPU -------------------------------------
# An op in the captured step that makes the host wait for the device (``.item()``, ``bool(t)``,
# a Python ``if`` on a tensor) or whose output shape depends on the data (``t[mask]``,
# ``nonzero``, ``unique``, ``masked_select``) breaks the capture on a GPU, or bakes one batch's
# value into the graph. Fake tensors carry no data: such an op raises on them
# (DataDependentOutputException, DynamicOutputShapeException), so ``GraphStep._step`` run on
# fake tensors fails wherever a capture would.

CAPTURE_UNSAFE = (DataDependentOutputException, DynamicOutputShapeException)
WORKFLOW_DIMS = {"dna": 7, "rna": 6, "protein": 5}


def _trace_captured_step(aggregator, modalities, dtype=torch.float16, missing=()):
    """``GraphStep._step`` as ``_build_graph_step`` sets it up (bf16 autocast, clipping, AdamW
    over the decay groups with a tensor LR, capturable and foreach as on CUDA), twice (the
    capture comes after warm-up steps made AdamW's state), on fake tensors of the cached
    batches' shapes: ``(emb (B, L, D) dtype, mask (B, L) bool)`` per modality."""
    dims = {m: WORKFLOW_DIMS[m] for m in modalities}
    torch.manual_seed(0)
    model = IsoFormer(
        n_tissues=3, dims=dims, aggregator=aggregator, d_model=16, heads=2, dropout=0.1
    ).train()
    fake = FakeTensorMode()
    with FakeCopyMode(fake):
        model = copy.deepcopy(model)
    with fake:
        decay, no_decay = parameter_groups(model)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
            lr=1e-3,
            capturable=True,
            foreach=True,
        )
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(1e-3)
        step = GraphStep(
            model, optimizer, torch.device("cpu"), grad_clip=0.5,
            autocast_dtype=torch.bfloat16, capture=False,
        )  # fmt: skip
        step._allocate_grads()
        rows, width = 4, 8
        inputs = {}
        for m in modalities:
            mask = torch.ones(rows, width, dtype=torch.bool)
            if m in missing:  # a sample without the modality (no protein): all-False mask
                mask[0] = False
            inputs[m] = (torch.randn(rows, width, dims[m]).to(dtype), mask)
        target = torch.randn(rows, 3)
        for _ in range(2):
            step._step(inputs, target)


@pytest.fixture
def capturing(monkeypatch):
    """As while a CUDA stream captures: TokenStandardizer takes its fixed-shape update; and
    AdamW's capturable path (no host read of the step count) allowed on the CPU."""
    monkeypatch.setattr(isoflow.model.aggregators, "_capturing", lambda: True)
    adam = importlib.import_module("torch.optim.adam")
    supported = adam._get_capturable_supported_devices
    monkeypatch.setattr(
        adam, "_get_capturable_supported_devices", lambda *a, **k: [*supported(*a, **k), "cpu"]
    )


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize(
    ("modalities", "dtype"),
    [
        (("dna", "rna", "protein"), torch.float16),
        (("rna", "protein"), torch.float32),
        (("protein",), torch.float16),  # one modality: cross_attention's self-attention
    ],
)
def test_the_captured_step_neither_waits_for_the_device_nor_has_data_dependent_shapes(
    capturing, aggregator, modalities, dtype
):
    _trace_captured_step(aggregator, modalities, dtype, missing={"protein"})


def _item(self, emb, mask):  # planted: the host reads a value
    mask.sum().item()


def _branch(self, emb, mask):  # planted: a Python if on a tensor
    if mask.any():
        pass


@pytest.mark.parametrize("plant", ["eager update", "item", "if"])
def test_the_trace_fails_on_an_op_a_capture_refuses(capturing, monkeypatch, plant):
    # the proof that the trace above sees them: the standardiser's eager update (emb[mask]),
    # .item() and an if on a tensor, each planted in the step, fail it
    if plant == "eager update":
        monkeypatch.setattr(isoflow.model.aggregators, "_capturing", lambda: False)
    else:
        masked = TokenStandardizer._update_masked
        extra = _item if plant == "item" else _branch

        def planted(self, emb, mask):
            extra(self, emb, mask)
            masked(self, emb, mask)

        monkeypatch.setattr(TokenStandardizer, "_update_masked", planted)
    with pytest.raises(CAPTURE_UNSAFE):
        _trace_captured_step("concat", ("rna", "protein"))


def test_backward_clipping_and_update_run_outside_the_callers_autocast():
    # Lightning's bf16-mixed wraps training_step, and so the graph step, in its autocast: the
    # step autocasts its forward itself and runs backward, clipping and AdamW without it, as
    # Lightning's automatic optimisation does (a backward under autocast may run other
    # kernels; PyTorch's make_graphed_callables records its backward without autocast)
    inputs, target = _batch(4, {"rna": 8, "protein": 8})
    weights, seen = {}, set()
    for outer in (False, True):
        model = _model(0.0)
        optimizer = _adamw(model)
        model.head.weight.register_hook(
            lambda grad, outer=outer: seen.add(
                ("backward", outer, torch.is_autocast_enabled("cpu"))
            )
        )
        optimizer.register_step_pre_hook(
            lambda *_, outer=outer: seen.add(("step", outer, torch.is_autocast_enabled("cpu")))
        )
        step = GraphStep(model, optimizer, torch.device("cpu"), grad_clip=0.05,
                         autocast_dtype=torch.bfloat16, capture=False)  # fmt: skip
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=outer):
            for _ in range(2):
                step(inputs, target)
        weights[outer] = model.state_dict()
    stages = ("backward", "step")
    assert seen == {(stage, outer, False) for stage in stages for outer in (False, True)}
    for name, value in weights[True].items():  # the caller's autocast changes nothing
        assert torch.equal(value, weights[False][name]), name
