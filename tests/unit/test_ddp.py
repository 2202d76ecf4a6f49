"""DDP on one node: two CPU processes over gloo train one experiment and rank 0 reports."""

import json
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment

from helpers.paths import REPO
from helpers.training import TINY_CONFIG, TISSUES, make_dataset, train_command
from isoflow.dataset import read_dataset, write_dataset
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.lightning import IsoFormerModule
from isoflow.loader import EpochSeededSampler, IsoformDataModule
from isoflow.metrics import tissue_means
from isoflow.train import cluster_environment, may_skip_parameters

pytestmark = pytest.mark.slow  # two training processes over gloo per test


@pytest.mark.parametrize("aggregator", ["cross_attention", "concat", "perceiver"])
def test_only_a_batch_without_proteins_leaves_parameters_unused(tmp_path, aggregator):
    """Why ``train.strategy: ddp`` looks for unused parameters only with a trained protein
    encoder read raw (``may_skip_parameters``): with all three tiny encoders fully trained,
    one backward reaches every trainable parameter; only a batch in which no transcript has
    a protein leaves the protein encoder's out (it is not run). Plain DDP fails at the next
    step where a parameter took no part (the 2-process tests below run both settings)."""
    dataset, genome = make_dataset(tmp_path)
    config = json.loads(json.dumps(TINY_CONFIG))
    experiment = {**EXPERIMENT_DEFAULTS, "modalities": ["dna", "rna", "protein"]}
    experiment["aggregator"] = aggregator
    data = IsoformDataModule(dataset, experiment["modalities"], genome_fasta=genome)
    data.setup("fit")
    module = IsoFormerModule(config, experiment, data.tissues)
    frame, items = data.frames["train"], data.datasets["train"]
    has_protein = frame["protein_seq"].notna().to_numpy()
    protein = {n for n, p in module.named_parameters() if n.startswith("model.encoders.protein.")}
    assert protein

    def unused(rows) -> set[str]:
        batch = data.collate([items[int(i)] for i in rows])
        module.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        return {n for n, p in module.named_parameters() if p.requires_grad and p.grad is None}

    assert unused(range(8)) == set() and has_protein[:8].any()
    assert unused(np.flatnonzero(~has_protein)[:4]) == protein
    assert may_skip_parameters(module)

    # a frozen protein encoder, or the protein read from the cache: nothing to leave out
    config["encoders"]["esm2"]["finetune_last"] = 0
    assert not may_skip_parameters(IsoFormerModule(config, experiment, data.tissues))
    cached = IsoFormerModule(TINY_CONFIG, experiment, data.tissues, {"protein": 8})
    assert not may_skip_parameters(cached)


def _standardize_on_rank(rank: int, port: int, batches: list, out) -> None:
    """One rank of a 2-process gloo group: its own batches through a TokenStandardizer in
    training mode; puts (count, mean, sum_sq) on ``out``."""
    import torch.distributed as dist

    from isoflow.model.aggregators import TokenStandardizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        standardize = TokenStandardizer(3).train()
        for emb, mask in batches[rank]:
            standardize(emb, mask)
        out.put(
            (rank, *(b.numpy() for b in (standardize.count, standardize.mean, standardize.sum_sq)))
        )
    finally:
        dist.destroy_process_group()


def test_token_standardizer_merges_every_ranks_tokens(tmp_path):
    """Under DDP each rank's standardiser holds the statistics of all ranks' real tokens (its
    own alone before, and DDP's buffer broadcast then made them rank 0's everywhere): two
    gloo ranks, different batches, one step where rank 1 has no real token, one where no rank
    has any; both end with the statistics one process gets from the same tokens."""
    import multiprocessing as mp
    import socket

    from isoflow.model.aggregators import TokenStandardizer

    generator = torch.Generator().manual_seed(0)

    def batch(n_rows: int, real: int):
        emb = 0.04 + 1e-3 * torch.randn(n_rows, 5, 3, generator=generator)
        mask = torch.zeros(n_rows, 5, dtype=torch.bool)
        mask.view(-1)[:real] = True
        return emb, mask

    batches = [
        [batch(2, 7), batch(2, 4), batch(1, 0), batch(2, 9)],
        [batch(2, 3), batch(2, 0), batch(1, 0), batch(2, 10)],
    ]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("fork")
    out = context.Queue()
    ranks = [
        context.Process(target=_standardize_on_rank, args=(r, port, batches, out)) for r in (0, 1)
    ]
    for process in ranks:
        process.start()
    results = sorted((out.get(timeout=120) for _ in ranks), key=lambda r: r[0])
    for process in ranks:
        process.join(timeout=60)
        assert process.exitcode == 0
    single = TokenStandardizer(3).train()
    for step in range(len(batches[0])):
        emb = torch.cat([batches[0][step][0], batches[1][step][0]])
        mask = torch.cat([batches[0][step][1], batches[1][step][1]])
        single(emb, mask)
    assert float(single.count) == 7 + 4 + 9 + 3 + 10
    for _, count, mean, sum_sq in results:
        assert float(count) == float(single.count)
        torch.testing.assert_close(torch.from_numpy(mean), single.mean, rtol=1e-6, atol=0)
        torch.testing.assert_close(torch.from_numpy(sum_sq), single.sum_sq, rtol=1e-4, atol=0)
    assert (results[0][2] == results[1][2]).all() and (results[0][3] == results[1][3]).all()


def _train_on_two_ranks(tmp_path, config, dataset):
    """Train an RNA + protein run of ``config`` (its DDP settings) on ``dataset``, ESM-2
    frozen (plain DDP, no unused-parameter search), as ``python -m isoflow.train``: Lightning's
    DDP launcher starts rank 1 by re-running this command line, and a module entry point is
    what it can re-run. Returns the finished process and the run folder."""
    config["encoders"]["esm2"]["finetune_last"] = 0
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    result = subprocess.run(
        train_command(config_path, {"modalities": ["rna", "protein"]}, dataset, run_dir),
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, run_dir


def test_ddp_two_cpu_processes(tmp_path):
    dataset, genome = make_dataset(tmp_path)
    # 7 valid transcripts: the 2 ranks' shards are padded with a repeated one (a train split
    # of 24 is not: each epoch trains on every transcript once)
    df, tissues = read_dataset(dataset)
    df.loc[df.index[df["split"] == "valid"][0], "split"] = "train"
    write_dataset(df, tissues, genome, dataset)
    assert (df["split"] == "valid").sum() == 7 and (df["split"] == "train").sum() % 2 == 0
    config = json.loads(json.dumps(TINY_CONFIG))
    config["train"].update({"max_epochs": 2, "accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    result, run_dir = _train_on_two_ranks(tmp_path, config, dataset)
    assert "world_size: 2" in result.stderr or "distributed_backend=gloo" in result.stderr
    assert result.stderr.count("ddp: find_unused_parameters=False") == 2  # one per rank

    df, _ = read_dataset(dataset)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_test"] == int((df["split"] == "test").sum())
    assert list(metrics["per_tissue"]) == TISSUES
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert history["val_loss"].notna().all()
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(predictions) == metrics["n_test"] * len(TISSUES)
    # the run's attempts log is rank 0's alone: one attempt, each epoch once
    attempts = (run_dir / "checkpoints" / "train.log").read_text()
    assert attempts.count("==== attempt 1 of") == 1 and "attempt 2" not in attempts
    assert attempts.count("epoch 0: train_loss") == attempts.count("epoch 1: train_loss") == 1

    # the last epoch's val_loss and metrics are one process's over the valid set with the
    # same weights (last.ckpt), each transcript counted once (the padded shards counted one
    # twice), and the standardisers hold the statistics of every training token of both
    # epochs (rank 0's alone before)
    experiment = {**EXPERIMENT_DEFAULTS, "modalities": ["rna", "protein"]}
    module = IsoFormerModule(config, experiment, TISSUES)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    data = IsoformDataModule(dataset, experiment["modalities"])
    data.setup("fit")
    valid = data.collate([data.datasets["valid"][i] for i in range(len(data.datasets["valid"]))])
    train = data.collate([data.datasets["train"][i] for i in range(len(data.datasets["train"]))])
    with torch.no_grad():
        predicted = module(valid).float()
        tokens = module.model.tokenize(train["inputs"])
        real = {m: int(module.model.encoders[m](**tokens[m])[1].sum()) for m in tokens}
    loss = float(torch.nn.functional.mse_loss(predicted, valid["target"]))
    last = history.iloc[-1]
    assert last["val_loss"] == pytest.approx(loss, rel=1e-5)
    means = tissue_means(valid["target"].numpy(), predicted.numpy(), TISSUES)[1]
    for key in ("r2", "spearman", "pearson"):
        assert last[f"val_{key}"] == pytest.approx(means[key], rel=1e-4, abs=1e-6), key
    for modality, count in real.items():
        key = f"model.aggregator.standardize.{modality}.count"
        assert float(checkpoint["state_dict"][key]) == 2 * count, modality


def test_ddp_padding_repeats_count_once(tmp_path):
    """A training set of 23 on 2 ranks, batches of 11: the sampler pads rank 1's shard with
    a repeated transcript, alone in its last batch. The epoch's train_loss is the MSE over the
    23 transcripts, each once, replayed by hand in one process (the weights as initialised:
    lr 1e-30 moves none; no dropout; each step both ranks' counted rows in one batch, whose
    tokens the standardisers merge as DDP's ranks do), and the standardisers hold the tokens
    of the 23 once. Before, the repeat counted in the loss, train_loss and the statistics."""
    dataset, _ = make_dataset(tmp_path)
    df, _ = read_dataset(dataset)
    n_train = int((df["split"] == "train").sum())
    assert n_train == 23
    config = json.loads(json.dumps(TINY_CONFIG))
    config["model"]["dropout"] = 0.0
    config["train"].update(
        {"max_epochs": 1, "batch_size": 11, "lr": 1e-30, "devices": 2, "strategy": "ddp"}
    )
    experiment = {**EXPERIMENT_DEFAULTS, "modalities": ["rna", "protein"]}
    _, run_dir = _train_on_two_ranks(tmp_path, config, dataset)
    history = pd.read_csv(run_dir / "history.csv")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)

    # the ranks' shards: 12 positions each, rank 1's last a repeat of a transcript drawn
    seed = int(experiment["seed"])
    shards = [list(EpochSeededSampler(n_train, seed, 2, rank)) for rank in (0, 1)]
    counted = [EpochSeededSampler(n_train, seed, 2, rank).counted for rank in (0, 1)]
    assert [len(s) for s in shards] == [12, 12] and counted == [12, 11]
    assert sorted(shards[0] + shards[1][:11]) == list(range(n_train))

    module = IsoFormerModule(config, experiment, TISSUES)
    module.load_state_dict(checkpoint["state_dict"])
    # the standardisers from scratch, as at the start of the run
    for standardize in module.model.aggregator.standardize.values():
        for buffer in (standardize.count, standardize.mean, standardize.sum_sq):
            buffer.zero_()
        standardize.has_stats = False
    module.train()
    data = IsoformDataModule(dataset, experiment["modalities"])
    data.setup("fit")
    items = data.datasets["train"]
    squared = 0.0
    with torch.no_grad():
        for start in (0, 11):
            rows = [
                shard[p]
                for shard, n in zip(shards, counted, strict=True)
                for p in range(start, min(start + 11, n))
            ]
            batch = data.collate([items[i] for i in rows])
            squared += float(((module(batch).float() - batch["target"]) ** 2).sum())
    by_hand = squared / (n_train * len(TISSUES))
    assert history["train_loss"].iloc[0] == pytest.approx(by_hand, rel=1e-5)
    # the standardisers: the real tokens of the 23 transcripts, each once
    train = data.collate([items[i] for i in range(n_train)])
    with torch.no_grad():
        tokens = module.model.tokenize(train["inputs"])
        real = {m: int(module.model.encoders[m](**tokens[m])[1].sum()) for m in tokens}
    for modality, count in real.items():
        stored = checkpoint["state_dict"][f"model.aggregator.standardize.{modality}.count"]
        replayed = module.model.aggregator.standardize[modality].count
        assert float(stored) == float(replayed) == count, modality

    # the test predictions: each test transcript once
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    test_ids = set(df.loc[df["split"] == "test", "transcript_id"])
    per_transcript = predictions.groupby("transcript_id").size()
    assert set(per_transcript.index) == test_ids and (per_transcript == len(TISSUES)).all()


# Run as a script file so that Lightning's DDP launcher can start rank 1 by re-running it.
INF_ON_RANK_1 = """
import os

import numpy as np

import isoflow.loader
from isoflow.jobs import run_script
from isoflow.train import main

if os.environ.get("LOCAL_RANK") == "1":  # set by the launcher for the process it starts
    select = isoflow.loader.select_training_rows

    def with_inf(*args, **kwargs):  # an overflowing TPM, in every row rank 1 may draw
        rows = select(*args, **kwargs)
        rows["Brain"] = np.inf
        return rows

    isoflow.loader.select_training_rows = with_inf
run_script(main)
"""


def test_ddp_non_finite_loss_on_one_rank_stops_both(tmp_path):
    """Only rank 1 sees an inf target: both ranks stop with the one line (raising on rank 1
    alone left rank 0 waiting in the gradient all-reduce)."""
    dataset, _ = make_dataset(tmp_path)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["train"].update({"max_epochs": 2, "accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    script = tmp_path / "train_inf.py"
    script.write_text(INF_ON_RANK_1)
    run_dir = tmp_path / "run"
    command = train_command(config_path, {"modalities": ["rna", "protein"]}, dataset, run_dir)
    command[1:3] = [str(script)]  # the script that patches rank 1, in place of -m isoflow.train
    proc = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # one process group: a hung rank 1 is killed with rank 0
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("a rank kept waiting after the other stopped on a non-finite loss")
    assert proc.returncode == 1, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("isoflow: error: ")]
    assert lines, stderr[-3000:]
    # each rank stopped on the same line (raising on one rank alone, the other died in the
    # all-reduce on gloo, with a traceback, and waits there on NCCL)
    assert len(lines) == 2 and len(set(lines)) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # the trained protein encoder can sit out a batch without proteins
    assert stderr.count("ddp: find_unused_parameters=True") == 2
    assert lines[0].startswith(f"isoflow: error: {dataset}:ENST")
    assert "train loss is inf at epoch 0, step 0" in lines[0]
    assert "non-finite targets" in lines[0] and "Brain = inf" in lines[0]
    assert not (run_dir / "metrics.json").exists()


def test_slurm_ranks_come_from_srun_tasks_or_from_lightning(monkeypatch):
    """In a SLURM job step of one task per device, srun's tasks are the ranks; in one of
    fewer tasks (the executor plugin's `srun -n1`), Lightning starts the ranks itself."""
    ddp = {"strategy": "ddp", "devices": 2}
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert cluster_environment(ddp) is None  # not in SLURM
    monkeypatch.setenv("SLURM_JOB_NAME", "rule_train")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")  # srun --ntasks-per-node=2
    environment = cluster_environment(ddp)
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE")
    assert isinstance(cluster_environment(ddp), LightningEnvironment)
    assert isinstance(cluster_environment({**ddp, "devices": [0, 1]}), LightningEnvironment)
    assert isinstance(cluster_environment({"strategy": "auto", "devices": 1}), SLURMEnvironment)
