"""Training: outputs and their format, exact CPU repeats, resume after SIGKILL, data controls."""

import copy
import json
import os
import re
import signal
import subprocess
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from lightning_fabric.plugins.environments import LightningEnvironment

import isoflow.lightning
import isoflow.settings
import isoflow.train
from helpers.paths import REPO
from helpers.training import (
    METRICS_KEYS,
    TINY_CONFIG,
    TISSUES,
    make_dataset,
    rerun_matches,
    stopped_after_epoch,
    train_command,
)
from isoflow.dataset import read_dataset, write_dataset
from isoflow.errors import InputError
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.lightning import (
    HISTORY_COLUMNS,
    History,
    IsoFormerModule,
    RequeueBeforeTimeLimit,
    parse_time_left,
    time_to_requeue,
)
from isoflow.loader import (
    IsoformDataModule,
    id_fraction,
    select_training_rows,
    truncate,
    valid_rows,
)
from isoflow.train import run_experiment, run_experiments

ALL = ["dna", "rna", "protein"]
FAST = ["rna", "protein"]  # the quickest tiny encoders; DNA is covered by the format test


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def config_with(**train):
    config = copy.deepcopy(TINY_CONFIG)
    config["train"].update(train)
    return config


@pytest.mark.slow
def test_outputs_all_modalities(dataset, tmp_path):
    path, fasta = dataset
    config = config_with(max_epochs=2)
    metrics = run_experiment(config, {"modalities": ["dna", "rna", "protein"]}, path, tmp_path)
    df, _ = read_dataset(path)
    n_test = int((df["split"] == "test").sum())

    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert set(on_disk) == METRICS_KEYS
    assert set(on_disk["mean"]) == {"r2", "spearman", "pearson"}
    assert list(on_disk["per_tissue"]) == TISSUES
    assert on_disk["n_test"] == n_test

    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert list(predictions.columns) == [
        "transcript_id",
        "gene_id",
        "tissue",
        "observed",
        "predicted",
    ]
    assert len(predictions) == n_test * len(TISSUES)
    assert np.isfinite(predictions["predicted"]).all()
    test_df = df[df["split"] == "test"].set_index("transcript_id")
    row = predictions.iloc[4]
    assert row["observed"] == pytest.approx(test_df.loc[row["transcript_id"], row["tissue"]])

    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [0, 1]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("aggregator", ["concat", "perceiver"])
def test_other_aggregators_train(dataset, tmp_path, aggregator):
    path, _ = dataset
    exp = {"modalities": FAST, "aggregator": aggregator}
    metrics = run_experiment(config_with(max_epochs=1), exp, path, tmp_path)
    assert metrics["n_test"] > 0 and metrics["mean"]["pearson"] is not None


@pytest.mark.slow
def test_exact_cpu_repeat(dataset, tmp_path):
    path, _ = dataset
    config = config_with(max_epochs=2)
    for run in ("a", "b"):
        run_experiment(config, {"modalities": FAST, "seed": 3}, path, tmp_path / run)
    for name in ("metrics.json", "history.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(dataset, tmp_path):
    path, _ = dataset
    config = config_with(max_epochs=5)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    experiment = {"modalities": FAST, "seed": 1}
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        train_command(config_path, experiment, path, killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint before the kill"
    assert not (killed / "metrics.json").exists(), "training finished before it was killed"

    subprocess.run(
        train_command(config_path, experiment, path, killed), env=env, check=True, timeout=600
    )
    uninterrupted = tmp_path / "uninterrupted"
    run_experiment(config, experiment, path, uninterrupted)
    for name in ("metrics.json", "history.csv"):
        assert (killed / name).read_text() == (uninterrupted / name).read_text(), name
    assert pd.read_csv(killed / "history.csv")["epoch"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_finished_early_stopped_run_resumed_trains_no_further_epoch(dataset, tmp_path):
    """Snakemake reruns a finished train job (its outputs removed, or a rerun trigger) and it
    resumes from last.ckpt: a run that had stopped early must end as it was, not train one
    more epoch (Lightning restores EarlyStopping's counters but not the trainer's stop)."""
    path, _ = dataset
    config = config_with(max_epochs=30, patience=1)
    experiment = {"modalities": FAST, "seed": 4}
    run = tmp_path / "run"
    run_experiment(config, experiment, path, run)
    epochs = pd.read_csv(run / "history.csv")["epoch"].tolist()
    assert len(epochs) < 30, "the run did not stop early; the test needs one that does"
    names = ["metrics.json", "history.csv", "predictions.parquet"]
    before = {name: (run / name).read_bytes() for name in names}
    last = run / "checkpoints" / "last.ckpt"
    checkpoints = {p.name: p.read_bytes() for p in last.parent.glob("*.ckpt")}
    step_log = (run / "csv_logs" / "metrics.csv").read_bytes()
    for name in names:
        (run / name).unlink()  # as Snakemake removes a job's outputs before it reruns

    run_experiment(config, experiment, path, run)
    for name in names:
        assert (run / name).read_bytes() == before[name], name
    assert {p.name: p.read_bytes() for p in last.parent.glob("*.ckpt")} == checkpoints
    # Lightning's CSVLogger deletes the step log it finds; the steps so far are kept
    assert (run / "csv_logs" / "metrics.1.csv").read_bytes() == step_log

    # a checkpoint without the early-stopping state (Lightning would skip it silently and
    # count patience from zero again) is one line, not a run that ends otherwise
    saved = torch.load(last, weights_only=False)
    key = next(k for k in saved["callbacks"] if k.startswith("EarlyStopping{"))
    del saved["callbacks"][key]
    torch.save(saved, last)
    for name in names:
        (run / name).unlink()
    with pytest.raises(InputError, match="no early-stopping state.*previous/unfit") as error:
        run_experiment(config, experiment, path, run)
    assert str(last) in str(error.value)
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_a_run_resumed_in_a_moved_folder_ends_as_an_uninterrupted_one(
    dataset, tmp_path, monkeypatch
):
    """Results copied elsewhere (other scratch space, another working directory) and the run
    resumed there: Lightning stores the absolute checkpoint folder and, finding another one,
    dropped the best val_loss, so the first epoch after the resume became the best whatever
    its loss and the run was tested with it."""
    path, _ = dataset
    config = config_with(max_epochs=7, patience=50, lr=0.05)
    experiment = {"modalities": FAST, "seed": 1}
    run_experiment(config, experiment, path, tmp_path / "whole")
    losses = pd.read_csv(tmp_path / "whole" / "history.csv")["val_loss"]
    best = int(losses.idxmin())
    assert best < len(losses) - 1, "the best epoch is the last: the test needs an earlier one"

    with stopped_after_epoch(monkeypatch, best):  # as a killed job
        run_experiment(config, experiment, path, tmp_path / "here")
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    (tmp_path / "here").rename(moved)
    rerun_matches(config, experiment, path, moved, tmp_path / "whole")
    assert sorted(p.name for p in (moved / "checkpoints").glob("*.ckpt")) == sorted(
        p.name for p in (tmp_path / "whole" / "checkpoints").glob("*.ckpt")
    )


def test_isoflow_callbacks_keep_lightnings_state_keys(tmp_path):
    """StayStopped and MovableCheckpoint store their state under the keys of the Lightning
    callbacks they replace, so checkpoints written before them restore it."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from isoflow.lightning import MovableCheckpoint, StayStopped

    stop = {"monitor": "val_loss", "mode": "min", "patience": 3}
    assert StayStopped(**stop).state_key == EarlyStopping(**stop).state_key
    for kwargs in (
        {"monitor": "val_loss", "mode": "min", "save_top_k": 1, "every_n_epochs": 1},
        {"filename": "last", "save_top_k": 1, "every_n_epochs": 1},
    ):
        kwargs["dirpath"] = tmp_path
        assert MovableCheckpoint(**kwargs).state_key == ModelCheckpoint(**kwargs).state_key


def train_each_alone(config, experiments, dataset_path, tmp_path, env=None) -> None:
    """Each experiment trained by ``python -m isoflow.train`` in a process of its own, into
    ``tmp_path/own/<name>`` (``env``: extra environment variables)."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for name, experiment in experiments.items():
        subprocess.run(
            train_command(config_path, experiment, dataset_path, tmp_path / "own" / name),
            env=env,
            check=True,
            timeout=600,
        )


@pytest.mark.slow
def test_runs_trained_in_one_process_match_runs_in_their_own(dataset, tmp_path):
    # resources.train_jobs: one trains every run in one job, one after another; each run's
    # outputs must be byte-identical to those of a job (a process) of its own.
    path, _ = dataset
    config = config_with(max_epochs=2)
    experiments = {
        "a": {"modalities": FAST, "seed": 1},
        "b": {"modalities": ["rna"], "aggregator": "concat", "seed": 2},
    }
    train_each_alone(config, experiments, path, tmp_path)
    runs = {
        name: {"experiment": exp, "run_dir": tmp_path / "one" / name, "log": tmp_path / name}
        for name, exp in experiments.items()
    }
    metrics = run_experiments(config, runs, path)
    assert list(metrics) == ["a", "b"]
    for name in experiments:
        for output in ("metrics.json", "predictions.parquet", "history.csv"):
            own = (tmp_path / "own" / name / output).read_bytes()
            assert (tmp_path / "one" / name / output).read_bytes() == own, (name, output)
    assert "run b (2 of 2 in this job)" in (tmp_path / "b").read_text()
    assert "run b" not in (tmp_path / "a").read_text()


@pytest.mark.slow
def test_runs_trained_in_worker_processes_match_one_thread_runs_of_their_own(dataset, tmp_path):
    # resources.train_processes: 2 (the demo) trains a job's runs in two spawned processes of
    # one torch thread each; each run's outputs must be byte-identical to those of a process
    # of its own with one torch thread (OMP_NUM_THREADS=1), whichever worker took it.
    path, _ = dataset
    config = config_with(max_epochs=2)
    experiments = {
        "a": {"modalities": FAST, "seed": 1},
        "b": {"modalities": ["rna"], "aggregator": "concat", "seed": 2},
        "c": {"modalities": ["protein"], "seed": 3},
    }
    train_each_alone(config, experiments, path, tmp_path, {"OMP_NUM_THREADS": "1"})
    runs = {
        name: {"experiment": exp, "run_dir": tmp_path / "two" / name, "log": tmp_path / name}
        for name, exp in experiments.items()
    }
    metrics = run_experiments(config, runs, path, processes=2)
    assert list(metrics) == ["a", "b", "c"]
    for name in experiments:
        assert metrics[name] == json.loads((tmp_path / "own" / name / "metrics.json").read_text())
        for output in ("metrics.json", "predictions.parquet", "history.csv"):
            own = (tmp_path / "own" / name / output).read_bytes()
            assert (tmp_path / "two" / name / output).read_bytes() == own, (name, output)
        assert f"run {name} (1 of 1 in this job)" in (tmp_path / name).read_text()


def test_command_line_passes_caches_and_requires_one_per_cached_modality(
    tmp_path, monkeypatch, capsys
):
    """`python -m isoflow.train` (docs/model.md) runs an experiment as rule train does: an
    embedding cache per `--cache MODALITY=DIR`; a modality that `model.cached_modalities`
    reads from a cache but no `--cache` names stops before training, not trains raw."""
    import isoflow.train

    config = copy.deepcopy(TINY_CONFIG)
    config["model"]["cached_modalities"] = ["rna"]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    calls = []
    monkeypatch.setattr(isoflow.train, "run_experiment", lambda *a, **kw: calls.append((a, kw)))
    args = ["--config", str(config_path), "--dataset", "d.parquet", "--run-dir", "run"]
    args += ["--experiment", json.dumps({"modalities": ["rna", "protein"]})]

    isoflow.train.main([*args, "--cache", "rna=emb/nt"])
    ((positional, keywords),) = calls
    assert positional[1]["modalities"] == ["rna", "protein"] and positional[2:] == (
        "d.parquet",
        "run",
        None,
    )
    assert keywords == {"cache_dirs": {"rna": "emb/nt"}}
    for bad, message in (([], "give --cache MODALITY=DIR"), (["--cache", "rna"], "rna")):
        with pytest.raises(SystemExit) as exit_info:
            isoflow.train.main([*args, *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert len(calls) == 1


# --- data controls --------------------------------------------------------------------


def test_fraction_is_a_nested_hash_subset(dataset):
    df, tissues = read_dataset(dataset[0])
    half = select_training_rows(df, tissues, 0.5, False, seed=0)
    quarter = select_training_rows(df, tissues, 0.25, False, seed=7)
    full = select_training_rows(df, tissues, 1.0, False, seed=0)
    assert set(quarter["transcript_id"]) <= set(half["transcript_id"]) < set(full["transcript_id"])
    assert len(full) == int((df["split"] == "train").sum())
    assert np.all(id_fraction(half["transcript_id"]) < 0.5)


def test_shuffle_targets_also_hides_real_validation_targets(dataset):
    df, tissues = read_dataset(dataset[0])
    plain = valid_rows(df, tissues, False, seed=0)
    shuffled = valid_rows(df, tissues, True, seed=0)
    assert plain["transcript_id"].tolist() == shuffled["transcript_id"].tolist()
    assert not np.array_equal(plain[tissues].to_numpy(), shuffled[tissues].to_numpy())
    assert sorted(map(tuple, shuffled[tissues].to_numpy())) == sorted(
        map(tuple, plain[tissues].to_numpy())
    )


def test_shuffle_targets_permutes_training_rows_only(dataset):
    df, tissues = read_dataset(dataset[0])
    plain = select_training_rows(df, tissues, 1.0, False, seed=0)
    shuffled = select_training_rows(df, tissues, 1.0, True, seed=0)
    again = select_training_rows(df, tissues, 1.0, True, seed=0)
    other = select_training_rows(df, tissues, 1.0, True, seed=1)
    assert shuffled["transcript_id"].tolist() == plain["transcript_id"].tolist()
    assert not np.array_equal(shuffled[tissues].to_numpy(), plain[tissues].to_numpy())
    # a permutation of whole target rows
    assert sorted(map(tuple, shuffled[tissues].to_numpy())) == sorted(
        map(tuple, plain[tissues].to_numpy())
    )
    assert np.array_equal(shuffled[tissues].to_numpy(), again[tissues].to_numpy())
    assert not np.array_equal(shuffled[tissues].to_numpy(), other[tissues].to_numpy())


def test_raw_inputs_truncated_and_windows_read(dataset):
    path, fasta = dataset
    data = IsoformDataModule(
        path, ["dna", "rna", "protein"], rna_max_nt=50, rna_truncate="keep_3prime", protein_max_aa=7
    )
    data.setup()
    item = data.datasets["train"][0]
    row = data.frames["train"].iloc[0]
    assert item["rna"] == row["rna_seq"][-50:]
    assert item["dna"].dtype == np.uint8 and len(item["dna"]) == 512
    batch = next(iter(data.val_dataloader()))
    assert batch["inputs"]["dna"].shape == (len(batch["target"]), 512)
    proteins = batch["inputs"]["protein"]
    assert all(p is None or len(p) <= 7 for p in proteins)
    assert truncate("ACGTAC", 4) == "ACGT" and truncate("ACGTAC", 4, "keep_3prime") == "GTAC"


@pytest.mark.parametrize("truncate_mode", ["keep_5prime", "keep_3prime"])
@pytest.mark.parametrize(
    ("rna_section", "nt_spec"),
    [
        ({"max_nt": 120}, {}),  # the budget from rna.max_nt
        ({"max_nt": 120}, {"max_len": 31}),  # a spec's own max_len: 180 nt, past max_nt
        ({"max_nt": 600}, {"max_len": 11}),  # and one under it: 60 nt
    ],
)
def test_raw_rna_is_cut_as_the_cache_cuts_it(truncate_mode, rna_section, nt_spec):
    # The embedding cache tokenises the whole RNA (the encoder cuts it); a raw run gets it
    # cut by the loader first. Both must hand the encoder the same letters: the loader used
    # rna.max_nt / protein.max_aa even where a spec's max_len set another budget.
    from isoflow.loader import raw_cuts
    from isoflow.model.encoders import build_encoder, spec_from_config

    config = copy.deepcopy(TINY_CONFIG)
    config["rna"] = {**rna_section, "truncate": truncate_mode}
    config["encoders"]["nucleotide_transformer"].update(nt_spec)
    config["encoders"]["esm2"]["max_len"] = 60  # past protein.max_aa (40)
    experiment = {**EXPERIMENT_DEFAULTS, "modalities": ["dna", "rna", "protein"]}
    cuts = raw_cuts(config, experiment)
    rna = build_encoder(
        "nucleotide_transformer", spec_from_config(config, "nucleotide_transformer")
    )
    esm = build_encoder("esm2", spec_from_config(config, "esm2"))
    rng = np.random.default_rng(8)
    for n in (50, 119, 121, 179, 181, 601, 2000):
        seq = "".join(rng.choice(list("ACGT"), n))
        raw = truncate(seq, cuts["rna_max_nt"], cuts["rna_truncate"])
        assert (
            rna.tokenize([raw])["input_ids"].tolist() == rna.tokenize([seq])["input_ids"].tolist()
        )
        protein = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n // 10))
        cut = truncate(protein, cuts["protein_max_aa"])
        assert esm.tokenize([cut])["tokens"].tolist() == esm.tokenize([protein])["tokens"].tolist()


def test_rna_max_nt_off_the_6mer_grid_is_one_line_error():
    # rna.max_nt 1000 made a 167-token budget (1,002 nt) for the cache and 1,000 nt for a
    # raw run: with keep_3prime every 6-mer differed (the frame moved by 2)
    from isoflow.model.encoders import spec_from_config

    config = copy.deepcopy(TINY_CONFIG)
    config["rna"] = {"max_nt": 1000, "truncate": "keep_3prime"}
    with pytest.raises(InputError, match=r"rna\.max_nt.*1000 is not a multiple of 6.*996 or 1002"):
        spec_from_config(config, "nucleotide_transformer")
    config["encoders"]["nucleotide_transformer"]["max_len"] = 168  # the spec's own budget
    assert spec_from_config(config, "nucleotide_transformer")["max_len"] == 168


def test_bad_split_value_names_the_transcript(dataset, tmp_path):
    df, tissues = read_dataset(dataset[0])
    df.loc[3, "split"] = "holdout"
    bad = tmp_path / "bad.parquet"
    write_dataset(df, tissues, dataset[1], bad)
    with pytest.raises(InputError, match=rf"bad.parquet:{df.loc[3, 'transcript_id']}: split"):
        IsoformDataModule(bad, ["rna"]).setup()


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_non_finite_target_stops_setup_naming_dataset_and_transcript(dataset, tmp_path, split):
    """Each split's targets are checked before any training: a non-finite valid or test
    target was found only after the run had trained (naming the run folder, not the
    dataset), and a valid one would have reached val_loss and early stopping."""
    df, tissues = read_dataset(dataset[0])
    row = df.index[df["split"] == split][1]
    df.loc[row, tissues[1]] = np.inf
    bad = tmp_path / "inf.parquet"
    write_dataset(df, tissues, dataset[1], bad)
    data = IsoformDataModule(bad, ["rna"])
    transcript = df.loc[row, "transcript_id"]
    with pytest.raises(
        InputError, match=rf"inf.parquet:{transcript}: target of tissue {tissues[1]} is inf"
    ):
        data.setup()
    assert data.datasets == {}


def test_empty_test_split_is_an_error(dataset, tmp_path):
    df, tissues = read_dataset(dataset[0])
    df.loc[df["split"] == "test", "split"] = "valid"
    bad = tmp_path / "notest.parquet"
    write_dataset(df, tissues, dataset[1], bad)
    with pytest.raises(InputError, match="no transcripts in the test split"):
        IsoformDataModule(bad, ["rna"]).setup()


def test_missing_genome_is_an_error(dataset, tmp_path):
    df, tissues = read_dataset(dataset[0])
    moved = tmp_path / "moved.parquet"
    write_dataset(df, tissues, tmp_path / "absent.fa", moved)
    with pytest.raises(InputError, match="absent.fa"):
        IsoformDataModule(moved, ["dna"]).setup()


CACHED_ENCODERS = (("rna", "nucleotide_transformer"), ("protein", "esm2"))


def cache_config(**train) -> dict:
    """``config_with(**train)`` reading RNA and protein from caches of 4 rows per sequence:
    the config :func:`tiny_caches` builds them with (a run checks its caches against it)."""
    config = config_with(**train)
    config["model"]["cached_modalities"] = ["rna", "protein"]
    for _, name in CACHED_ENCODERS:
        config["encoders"][name]["pool_to"] = 4
    return config


def tiny_caches(path, tmp_path) -> dict:
    """The RNA and protein embedding caches of the tiny NT and ESM-2, 4 rows per sequence,
    built as rule embed builds them for :func:`cache_config`."""
    from isoflow.embed import embed_dataset
    from isoflow.model.encoders import spec_from_config

    caches = {}
    for modality, name in CACHED_ENCODERS:
        caches[modality] = tmp_path / "embeddings" / name
        embed_dataset(path, name, spec_from_config(cache_config(), name), caches[modality])
    return caches


def test_cache_mode_trains_from_embeddings(dataset, tmp_path):

    path, fasta = dataset
    caches = tiny_caches(path, tmp_path)
    config = cache_config(max_epochs=1)
    exp = {"modalities": FAST}
    metrics = run_experiment(config, exp, path, tmp_path / "run", cache_dirs=caches)
    assert metrics["mean"]["pearson"] is not None

    # a cache built from another dataset misses transcripts: one line naming one of them
    df, tissues = read_dataset(path)
    df["transcript_id"] = df["transcript_id"] + "x"
    other = tmp_path / "other.parquet"
    write_dataset(df, tissues, fasta, other)
    absent = r"nucleotide_transformer:ENST\d+\.1x: \d+ transcripts of the dataset are not in"
    with pytest.raises(InputError, match=absent):
        IsoformDataModule(other, ["rna"], cache_dirs={"rna": caches["rna"]}).setup()


@pytest.mark.parametrize(
    ("modality", "name"), [("dna", "enformer"), ("rna", "nucleotide_transformer")]
)
def test_a_cache_missing_a_dataset_transcript_is_one_line(dataset, tmp_path, modality, name):
    """A transcript of the dataset the cache has no item for (a cache of an earlier dataset) is
    refused by the check for absent transcripts: for DNA the only one (its cache keys are of
    genome windows, never compared with the dataset's sequences); for RNA the later 'changed
    sequence' check would refuse it too, in other words, hence the whole message here."""
    from isoflow.embed import embed_dataset
    from isoflow.model.encoders import spec_from_config

    path, fasta = dataset
    cache = tmp_path / "embeddings" / name
    embed_dataset(path, name, spec_from_config(cache_config(), name), cache, fasta)
    df, tissues = read_dataset(path)
    df.loc[5, "transcript_id"] = "ENST_NEW.1"  # its sequences and window as before, new ID
    other = tmp_path / "other.parquet"
    write_dataset(df, tissues, fasta, other)
    with pytest.raises(InputError) as error:
        IsoformDataModule(other, [modality], cache_dirs={modality: cache}).setup()
    assert str(error.value) == (
        f"{cache}:ENST_NEW.1: 1 transcripts of the dataset are not in this {modality} embedding "
        f"cache; rebuild it: snakemake --forcerun {cache} (rule embed, or embed_shared under "
        "embed.share_forward, writes it)"
    )


def test_a_dna_cache_of_other_windows_is_refused(dataset, tmp_path, caplog):
    """A DNA cache records the sha256 of the windows it embedded (embed.windows_digest): a
    dataset of the same transcripts with other windows (another dna.window) is refused in one
    line; a cache from before the field is accepted with an info line."""
    import json
    import logging

    from isoflow.embed import embed_dataset
    from isoflow.model.encoders import spec_from_config

    path, fasta = dataset
    cache = tmp_path / "embeddings" / "enformer"
    embed_dataset(path, "enformer", spec_from_config(cache_config(), "enformer"), cache, fasta)
    IsoformDataModule(path, ["dna"], cache_dirs={"dna": cache}).setup()  # its own: accepted
    df, tissues = read_dataset(path)
    df = df.iloc[::-1].reset_index(drop=True)  # row order: not a difference
    df["window_start"] -= 8
    df["window_end"] += 8  # a wider dna.window around the same TSSs
    other = tmp_path / "other.parquet"
    write_dataset(df, tissues, fasta, other)
    with pytest.raises(InputError) as error:
        IsoformDataModule(other, ["dna"], cache_dirs={"dna": cache}).setup()
    assert str(error.value).startswith(
        f"{cache}/meta.json:windows_sha256: the dataset's DNA windows (transcript, contig, "
    )
    meta = json.loads((cache / "meta.json").read_text())
    del meta["windows_sha256"]  # a cache built before the field
    (cache / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO, logger="isoflow.loader"):
        IsoformDataModule(other, ["dna"], cache_dirs={"dna": cache}).setup()
    assert "records no windows_sha256" in caplog.text


def test_a_run_refuses_a_cache_of_another_modality_encoder_spec_or_pooling(dataset, tmp_path):
    """A cache is checked against the run before anything trains: its modality, encoder,
    spec (as rule embed records it: defaults and the config's sequence limits filled in)
    and pooling, each one line naming the cache folder; `python -m isoflow.train` too."""
    from isoflow.embed import embed_dataset
    from isoflow.loader import cache_expectations
    from isoflow.model.encoders import spec_from_config

    path, _ = dataset
    caches = tiny_caches(path, tmp_path)
    config = cache_config(max_epochs=1)
    exp = {"modalities": FAST}

    def refused(message, config=config, exp=exp, caches=caches):
        run_dir = tmp_path / "run"
        with pytest.raises(InputError, match=message) as error:
            run_experiment(config, exp, path, run_dir, cache_dirs=caches)
        assert "\n" not in str(error.value)
        assert not (run_dir / "metrics.json").exists()

    swapped = {"rna": caches["protein"], "protein": caches["rna"]}
    refused(
        r"embeddings/esm2:meta.json: is a cache of protein embeddings .* given for rna",
        caches=swapped,
    )
    other = copy.deepcopy(config)  # the run reads RNA with another encoder
    other["encoders"]["nt_other"] = {**other["encoders"]["nucleotide_transformer"]}
    other["encoders"]["nt_other"].update(**{"class": "nucleotide_transformer", "modality": "rna"})
    other["model"]["rna_encoder"] = "nt_other"
    refused(r"nucleotide_transformer/meta.json:encoder: nucleotide_transformer built", other)
    other = copy.deepcopy(config)  # another pool_to
    other["encoders"]["esm2"]["pool_to"] = 8
    refused(r"esm2/meta.json:spec: encoder spec differs .*: pool_to 4 \(config 8\)", other)
    other = copy.deepcopy(config)  # another rna.max_nt: the token budget the cache ran with
    other["rna"]["max_nt"] = 60
    refused(r"nucleotide_transformer/meta.json:spec: .*max_len 21 \(config 11\)", other)

    # the pooling: the adaptive caches for a positional run, positional ones for an adaptive
    # run, and positional ones of other strides than the config's embed section gives
    refused(r"pooled adaptive, the run reads positional", exp={**exp, "pooling": "positional"})
    positional = {"mode": "positional", "dna_crop_bins": 4, "stride_nt": 24, "stride_aa": 4}
    pooled = {}
    for modality, name in CACHED_ENCODERS:
        pooled[modality] = tmp_path / "embeddings" / f"{name}-positional"
        spec = spec_from_config(config, name)
        embed_dataset(path, name, spec, pooled[modality], pooling=positional)
    refused(
        r"transformer-positional/meta.json:pooling: this cache is pooled positional", caches=pooled
    )
    positional_exp = {**exp, "pooling": "positional"}
    other = copy.deepcopy(config)
    other["embed"] = {"dna_crop_bins": 4, "stride_nt": 48, "stride_aa": 4}
    refused(
        r"positional/meta.json:pooling: .*stride_nt.: 24.* in this cache",
        other,
        positional_exp,
        pooled,
    )
    other["embed"]["stride_nt"] = 24  # the config's strides: accepted
    expect = cache_expectations(other, {**EXPERIMENT_DEFAULTS, **positional_exp})
    IsoformDataModule(path, FAST, cache_dirs=pooled, cache_expect=expect).setup()
    # spec keys a cache's content does not read (workflow.cache_spec): accepted too
    edited = copy.deepcopy(other)
    for name in ("esm2", "nucleotide_transformer"):
        edited["encoders"][name].update(pool_to=3, finetune_last=1, gradient_checkpointing=True)
    expect = cache_expectations(edited, {**EXPERIMENT_DEFAULTS, **positional_exp})
    IsoformDataModule(path, FAST, cache_dirs=pooled, cache_expect=expect).setup()
    expect = cache_expectations(edited, {**EXPERIMENT_DEFAULTS, **exp})  # adaptive: pool_to
    with pytest.raises(InputError, match=r"meta.json:spec: [^;]*: pool_to \d+ \(config 3\);"):
        IsoformDataModule(path, FAST, cache_dirs=caches, cache_expect=expect).setup()
    # an experiment without `pooling` is adaptive (its name and fingerprint say so), even
    # under a config whose embed.pooling is positional (expand_experiments applies that)
    other["embed"]["pooling"] = "positional"
    expect = cache_expectations(other, {**EXPERIMENT_DEFAULTS, **exp})
    assert {e["pooling"] for e in expect.values()} == {"adaptive"}
    IsoformDataModule(path, FAST, cache_dirs=caches, cache_expect=expect).setup()

    # the command line (docs/model.md, "Training one run by hand"): an RNA cache given as DNA
    config_path = tmp_path / "config.yaml"
    config["model"]["cached_modalities"] = ["rna"]
    config_path.write_text(yaml.safe_dump(config))
    args = [
        "--config",
        str(config_path),
        "--dataset",
        str(path),
        "--run-dir",
        str(tmp_path / "cli"),
    ]
    args += ["--experiment", json.dumps({"modalities": ["dna", "rna"]})]
    args += ["--cache", f"rna={caches['rna']}", "--cache", f"dna={caches['rna']}"]
    with pytest.raises(InputError, match=r"a cache of rna embeddings .* given for dna"):
        isoflow.train.main(args)


def test_a_cache_must_hold_the_dataset_sequences_under_indexed_keys(dataset, tmp_path):
    """RNA / protein: each transcript's key in the cache must be its current sequence's
    (a cache of another dataset with the same IDs), and every key must be in the cache's
    index (an all-False mask would read as a missing modality)."""
    import pyarrow.parquet as pq

    path, fasta = dataset
    caches = tiny_caches(path, tmp_path)
    df, tissues = read_dataset(path)
    changed = df.copy()
    changed.loc[3, "rna_seq"] = changed.loc[3, "rna_seq"][::-1]
    other = tmp_path / "changed.parquet"
    write_dataset(changed, tissues, fasta, other)
    tid = re.escape(df.loc[3, "transcript_id"])
    with pytest.raises(InputError, match=rf"nucleotide_transformer:{tid}: 1 transcripts' rna_seq"):
        IsoformDataModule(other, FAST, cache_dirs=caches).setup()
    with_protein = df.index[df["protein_seq"].notna()][0]
    changed = df.copy()
    changed.loc[with_protein, "protein_seq"] = None  # a protein the cache has, gone
    write_dataset(changed, tissues, fasta, other)
    tid = re.escape(df.loc[with_protein, "transcript_id"])
    with pytest.raises(InputError, match=rf"esm2:{tid}: 1 transcripts' protein_seq"):
        IsoformDataModule(other, FAST, cache_dirs=caches).setup()

    index = pq.read_table(caches["protein"] / "index.parquet")
    dropped = index.slice(1)  # the first sequence's rows no longer indexed
    pq.write_table(dropped, caches["protein"] / "index.parquet")
    key = index.column("key")[0].as_py()
    items = pq.read_table(caches["protein"] / "items.parquet").to_pandas()
    first = items.loc[items["key"] == key, "item"].iloc[0]
    tid = re.escape(first)
    with pytest.raises(InputError, match=rf"esm2:{tid}: \d+ transcripts have a key .* index"):
        IsoformDataModule(path, FAST, cache_dirs=caches).setup()


def shared_input_dataset(tmp_path):
    """A dataset whose test genes' isoforms all share one DNA window, RNA and protein (as
    isoforms sharing a TSS share a DNA-only model's input), 25 genes' worth of test rows."""
    path, fasta = make_dataset(tmp_path, n_genes=35)
    df, tissues = read_dataset(path)
    genes = sorted(df["gene_id"].unique())
    df.loc[df["gene_id"].isin(genes[6:31]), "split"] = "test"
    test = df["split"] == "test"
    first = df[test].groupby("gene_id").head(1).set_index("gene_id")
    for column in ("window_start", "window_end", "strand", "tss", "rna_seq", "protein_seq"):
        df.loc[test, column] = df.loc[test, "gene_id"].map(first[column]).to_numpy()
    shared = tmp_path / "shared.parquet"
    write_dataset(df, tissues, fasta, shared)
    return shared, fasta


def test_raw_inputs_are_told_apart_by_their_sequences(tmp_path):
    # read raw, rows share an input when every modality's sequence (as cut) is the same: the
    # DNA window's letters, the RNA, the protein (the proteinless sharing "none")
    path, fasta = shared_input_dataset(tmp_path)
    for modalities in (["dna"], ["protein"], ["dna", "rna", "protein"]):
        data = IsoformDataModule(path, modalities, genome_fasta=fasta)
        data.setup()
        dataset = data.datasets["test"]
        first, inverse = dataset.distinct_inputs()
        seen = [
            tuple(
                seq.tobytes() if isinstance(seq, np.ndarray) else seq
                for seq in (dataset.sequence(i, m) for m in modalities)
            )
            for i in range(len(dataset))
        ]
        assert len(first) == len(set(seen)) < len(dataset)
        assert [seen[i] for i in first[inverse]] == seen
        assert (np.diff(first) > 0).all()  # in dataset order
        batches = [b["index"].tolist() for b in data.distinct_dataloader("test")]
        assert sum(batches, []) == first.tolist()


@pytest.mark.slow
@pytest.mark.parametrize(("modality", "name"), [("dna", "enformer"), ("protein", "esm2")])
def test_isoforms_with_one_input_get_the_same_prediction_bits(tmp_path, modality, name):
    # Predicted each in its own place, the same cached rows came out of other batches and
    # other positions of a batch a few ulp apart (with the kernels held to AVX2, as the tests
    # and the workflow hold them: 30 of the demo's 198 DNA windows of the test split), and
    # the within-gene Spearman ranked that noise. Each distinct input is predicted once now.
    from isoflow.embed import embed_dataset
    from isoflow.model.encoders import spec_from_config

    path, fasta = shared_input_dataset(tmp_path)
    config = config_with(max_epochs=1, eval_batch_size=32)
    config["model"].update(d_model=32, heads=4, n_latents=8, cached_modalities=[modality])
    cache = tmp_path / name
    embed_dataset(path, name, spec_from_config(config, name), cache, genome_fasta=fasta)
    data = IsoformDataModule(path, [modality], cache_dirs={modality: cache}, eval_batch_size=32)
    data.setup()
    test = data.frames["test"]
    first, inverse = data.datasets["test"].distinct_inputs()
    # one input per window (DNA) or protein sequence, the proteinless sharing one
    key = ["chrom", "strand", "window_start", "window_end"]
    key = key if modality == "dna" else ["protein_seq"]
    inputs = np.array(["|".join(map(str, row)) for row in test[key].itertuples(index=False)])
    assert len(first) == len(set(inputs)) < len(test)
    assert (inputs[first][inverse] == inputs).all()
    batch_of = np.arange(len(test)) // 32  # the test loader's batches: sharers straddle them
    assert (test.assign(batch=batch_of).groupby("gene_id")["batch"].nunique() > 1).any()

    exp = {"modalities": [modality], "aggregator": "cross_attention"}
    metrics = run_experiment(config, exp, path, tmp_path / "run", cache_dirs={modality: cache})
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    values = predictions.groupby(["gene_id", "tissue"])["predicted"].nunique()
    assert (values == 1).all(), values[values > 1]
    assert metrics["within_gene_groups"] > 0
    assert metrics["within_gene_tied"] == metrics["within_gene_groups"]


def test_cache_batches_gathered_whole_train_bit_identically(dataset, tmp_path, monkeypatch):
    # Batches gathered whole (float16 as stored, cast on the model's device) against the
    # per-item path (each item looked up and converted to float32 on the host, as before):
    # float16 -> float32 is exact, so every weight, loss and metric is bit-identical.
    import isoflow.loader

    path, _ = dataset
    caches = tiny_caches(path, tmp_path)
    config = cache_config(max_epochs=2)
    exp = {"modalities": FAST, "seed": 1}

    data = IsoformDataModule(path, FAST, cache_dirs=caches, batch_size=8)
    data.setup()
    whole = next(iter(data.train_dataloader()))
    protein = whole["inputs"]["protein"]
    assert protein[0].dtype == torch.float16 and not protein[1].all()  # some have no protein
    run_experiment(config, exp, path, tmp_path / "whole", cache_dirs=caches)

    monkeypatch.setattr(isoflow.loader.IsoformDataset, "__getitems__", None)  # item by item
    items = next(iter(data.train_dataloader()))
    assert items["inputs"]["protein"][0].dtype == torch.float32
    for modality in FAST:
        for a, b in zip(whole["inputs"][modality], items["inputs"][modality], strict=True):
            assert torch.equal(a.float() if a.is_floating_point() else a, b)
    assert torch.equal(whole["target"], items["target"])
    assert torch.equal(whole["index"], items["index"])
    run_experiment(config, exp, path, tmp_path / "items", cache_dirs=caches)
    for name in ("metrics.json", "history.csv", "predictions.parquet"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "items" / name).read_bytes()


def _per_step_logging(monkeypatch) -> None:
    """IsoFormerModule as before the epoch losses were summed by hand (issue 14): one
    ``self.log`` per step, validation means from ``evaluate`` (its within-gene Spearman
    computed and dropped), Lightning's own batch transfer."""
    import pytorch_lightning as pl

    from isoflow.metrics import evaluate

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self(batch).float(), batch["target"])
        self.record_loss(loss, batch, "train")
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(batch["target"]),
        )
        return loss

    def validation_step(self, batch, batch_idx):
        predicted = self(batch).float()
        loss = torch.nn.functional.mse_loss(predicted, batch["target"])
        self.record_loss(loss, batch, "valid")
        self.log(
            "val_loss",
            loss,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(batch["target"]),
        )
        self._val_outputs.append((predicted.detach(), batch["target"]))

    def on_validation_epoch_end(self):
        self.check_finite()
        predicted = torch.cat([p for p, _ in self._val_outputs]).numpy()
        observed = torch.cat([t for _, t in self._val_outputs]).numpy()
        self._val_outputs.clear()
        genes = np.arange(len(observed)).astype(str)
        for key, value in evaluate(genes, observed, predicted, self.tissues)["mean"].items():
            self.log(f"val_{key}", float("nan") if value is None else value, sync_dist=False)

    monkeypatch.setattr(IsoFormerModule, "training_step", training_step)
    monkeypatch.setattr(IsoFormerModule, "validation_step", validation_step)
    monkeypatch.setattr(IsoFormerModule, "on_validation_epoch_end", on_validation_epoch_end)
    monkeypatch.setattr(IsoFormerModule, "on_train_epoch_end", IsoFormerModule.check_finite)
    monkeypatch.setattr(
        IsoformDataModule,
        "transfer_batch_to_device",
        pl.LightningDataModule.transfer_batch_to_device,
    )


def _per_tensor_adamw(monkeypatch) -> None:
    """AdamW's per-tensor loop (its CPU default), not the foreach update."""
    adamw = torch.optim.AdamW

    def per_tensor(*args, **kwargs):
        return adamw(*args, **{**kwargs, "foreach": False})

    monkeypatch.setattr(torch.optim, "AdamW", per_tensor)


@pytest.mark.parametrize("old", [_per_step_logging, _per_tensor_adamw], ids=["log", "adamw"])
def test_cheaper_steps_train_byte_identically_to_the_path_they_replaced(
    dataset, tmp_path, monkeypatch, old
):
    # Issue 14: the epoch losses logged once per epoch (summed as Lightning sums them), the
    # validation means without evaluate(), a CPU batch not walked by Lightning's transfer,
    # and AdamW foreach: each leaves every output, log and weight bit-identical.
    path, _ = dataset
    config = config_with(max_epochs=2)
    exp = {"modalities": ["rna"], "seed": 1}
    run_experiment(config, exp, path, tmp_path / "new")
    old(monkeypatch)
    run_experiment(config, exp, path, tmp_path / "old")
    for name in ("metrics.json", "history.csv", "predictions.parquet", "csv_logs/metrics.csv"):
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes()
    history = pd.read_csv(tmp_path / "new" / "history.csv")
    assert history[HISTORY_COLUMNS].notna().all().all()
    new, old_state = (
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)
        for run in ("new", "old")
    )
    assert new["epoch"] == old_state["epoch"] == 1
    for key, value in new["state_dict"].items():
        assert torch.equal(value, old_state["state_dict"][key]), key


@pytest.mark.parametrize("cut", ["max_steps", "limit_train_batches"])
def test_epoch_loss_of_an_epoch_cut_short_matches_per_step_logging(dataset, monkeypatch, cut):
    # The epoch's train_loss is logged by its last step, where History (called before the
    # module's on_train_epoch_end) finds it: also when max_steps or limit_train_batches end
    # the epoch before the loader does.
    import pytorch_lightning as pl

    experiment = {**EXPERIMENT_DEFAULTS, "modalities": ["rna"]}

    def history() -> pd.DataFrame:
        pl.seed_everything(0)
        data = IsoformDataModule(dataset[0], ["rna"], batch_size=8, seed=0)
        data.setup("fit")
        n_batches = len(data.train_dataloader())
        assert n_batches >= 3
        limit = {"max_steps": n_batches + 2} if cut == "max_steps" else {cut: 2}
        rows = History()
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[rows],
            **limit,
        )
        trainer.fit(IsoFormerModule(TINY_CONFIG, experiment, data.tissues), datamodule=data)
        return pd.DataFrame(rows.rows)

    new = history()
    _per_step_logging(monkeypatch)
    old = history()
    assert len(new) == 2 and new["train_loss"].notna().all()
    assert new["train_loss"].iloc[1] != new["train_loss"].iloc[0]
    pd.testing.assert_frame_equal(new, old, check_exact=True)


def test_batch_transfer_skips_only_a_batch_already_on_the_device(dataset):
    from isoflow.loader import on_device

    data = IsoformDataModule(dataset[0], ["rna"])
    cpu = torch.device("cpu")

    def batch(target_device="cpu"):
        emb = torch.zeros(2, 4, 8, dtype=torch.float16)
        return {
            "index": torch.arange(2),
            "target": torch.zeros(2, 3, device=target_device),
            "inputs": {"rna": (emb, torch.ones(2, 4, dtype=torch.bool)), "ids": ["a", "b"]},
        }

    on_cpu = batch()
    assert data.transfer_batch_to_device(on_cpu, cpu, 0) is on_cpu
    for start in (batch(), batch("meta")):  # all or part elsewhere: Lightning moves it
        moved = data.transfer_batch_to_device(start, torch.device("meta"), 0)
        assert moved["index"].is_meta and moved["target"].is_meta
        assert all(t.is_meta for t in moved["inputs"]["rna"])
        assert moved["inputs"]["ids"] == ["a", "b"]
    assert not on_device(batch("meta"), cpu)

    class Movable:  # an object Lightning moves by its .to()
        def to(self, device, **kwargs):
            self.moved_to = device
            return self

    moved = data.transfer_batch_to_device({"x": Movable()}, cpu, 0)
    assert moved["x"].moved_to == cpu


# --- non-finite losses and strict metrics ------------------------------------------------


def test_non_finite_target_stops_training_with_one_line(dataset, tmp_path, monkeypatch, capsys):
    import isoflow.loader
    from isoflow.jobs import run_script

    path, _ = dataset
    df, tissues = read_dataset(path)
    train = isoflow.loader.select_training_rows(df, tissues, 1.0, False, 0)
    transcript = train.loc[2, "transcript_id"]
    select = isoflow.loader.select_training_rows

    def with_inf(*args, **kwargs):  # an overflowing TPM: log1p(mean TPM) = inf
        rows = select(*args, **kwargs)
        rows.loc[2, "Brain"] = np.inf
        return rows

    monkeypatch.setattr(isoflow.loader, "select_training_rows", with_inf)
    exp = {"modalities": FAST}
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: run_experiment(config_with(max_epochs=2), exp, path, tmp_path))
    assert exit_info.value.code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"isoflow: error: {path}:{transcript}: ")
    assert "run rna+protein_enformer_cross_attention_s0: train loss is" in line
    assert "epoch 0, step " in line and "non-finite targets" in line and "Brain = inf" in line
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "predictions.parquet").exists()


@pytest.mark.slow
def test_diverging_loss_names_the_learning_rate(dataset, tmp_path):
    path, _ = dataset
    config = config_with(max_epochs=2, lr=1e35)
    with pytest.raises(InputError, match=r"loss is (nan|inf) at epoch \d, step \d+: .*diverged"):
        run_experiment(config, {"modalities": FAST}, path, tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_non_finite_test_target_writes_nothing(tmp_path):
    from isoflow.train import write_outputs

    frame = pd.DataFrame(
        {
            "transcript_id": ["T1", "T2", "T3"],
            "gene_id": ["G1", "G1", "G2"],
            "Liver": [1.0, np.inf, 2.0],
        }
    )
    with pytest.raises(InputError, match=r":T2: test observed target for Liver is inf"):
        write_outputs(tmp_path, frame, ["Liver"], np.ones((3, 1)), [])
    assert list(tmp_path.iterdir()) == []


def test_metrics_json_is_strict_and_marks_collapse(tmp_path):
    from isoflow.train import write_outputs

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "transcript_id": [f"T{i}" for i in range(20)],
            "gene_id": [f"G{i // 2}" for i in range(20)],
            **{t: rng.normal(2, 1, 20) for t in TISSUES},
        }
    )
    observed = frame[TISSUES].to_numpy()
    # constant predictions: they rank nothing (correlations 0, every tissue named), and
    # nothing written is NaN
    constant = write_outputs(tmp_path / "c", frame, TISSUES, np.full((20, 3), 2.0), [])
    text = (tmp_path / "c" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    on_disk = json.loads(text)
    assert on_disk == json.loads(json.dumps(constant))
    assert on_disk["collapsed"] is True and on_disk["prediction_spread"] == 0.0
    assert on_disk["mean"]["spearman"] == 0.0
    assert on_disk["constant_prediction_tissues"] == TISSUES
    assert (on_disk["within_gene_groups"], on_disk["within_gene_tied"]) == (30, 30)
    real = write_outputs(tmp_path / "r", frame, TISSUES, observed + rng.normal(0, 1, (20, 3)), [])
    assert real["collapsed"] is False and real["prediction_spread"] > 0.5


@pytest.mark.slow
def test_checkpoint_of_another_model_version_is_one_line(dataset, tmp_path):
    import torch

    path, _ = dataset
    exp = {"modalities": FAST}
    config = config_with(max_epochs=2)
    run_experiment(config, exp, path, tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    # as written before the aggregators kept feature statistics
    for key in [k for k in state["state_dict"] if ".standardize." in k]:
        del state["state_dict"][key]
    torch.save(state, last)
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(InputError, match=r"last.ckpt: checkpoint does not fit this model") as err:
        run_experiment(config, exp, path, tmp_path)  # same settings: it resumes
    assert not (tmp_path / "metrics.json").exists()
    # the advice keeps the checkpoint and lets the run train afresh
    advice = re.search(r"`(mkdir -p .*)`", str(err.value)).group(1)
    subprocess.run(advice, shell=True, check=True)
    assert (tmp_path / "previous" / "unfit" / "checkpoints" / "last.ckpt").is_file()
    run_experiment(config, exp, path, tmp_path)
    assert (tmp_path / "metrics.json").is_file()


def test_train_script_runs_nothing_when_imported_by_a_spawned_worker():
    # resources.train_processes spawns workers, which import the job's script as
    # __mp_main__ (multiprocessing's spawn); Snakemake's `snakemake` object exists only in
    # the job's own process, so the script must not run its job then.
    import runpy

    namespace = runpy.run_path(str(REPO / "scripts" / "train.py"), run_name="__mp_main__")
    assert callable(namespace["main"])


def test_the_parent_of_train_workers_imports_neither_torch_nor_lightning():
    # The demo's train job (resources.train_processes: 2) trains in spawned workers; its own
    # process used to import Lightning (~10 CPU-s on the demo machine) before the first
    # worker started. The job script and isoflow.train_workers must not import torch.
    import subprocess
    import sys

    code = (
        "import runpy, sys; import isoflow.train_workers; "
        f"runpy.run_path({str(REPO / 'scripts' / 'train.py')!r}, run_name='__mp_main__'); "
        "print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        ("worker_raising_input_error", "InputError: data.parquet:ENST0001.1: tpm is negative"),
        # a subclass comes back as itself, not as a plain InputError
        (
            "worker_raising_download_error",
            "isoflow.download.DownloadError: https://example.org/w.bin: HTTP 404: not found",
        ),
        ("worker_raising_key_error", "RuntimeError: run bad: KeyError: 'no such column'"),
    ],
)
def test_a_run_failing_in_a_train_worker_ends_the_job_with_one_line(worker, expected):
    # An InputError raised in a worker of resources.train_processes failed to unpickle in
    # the parent (its args hold only the rendered line), which ended multiprocessing's
    # result thread: starmap then waited forever, and Snakemake (or SLURM, until the time
    # limit) never learnt the job had failed. The timeout is what fails here if it hangs.
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'tests'); import helpers.training as h; "
        "from isoflow.train_workers import run_in_processes\n"
        "runs = {'ok1': {}, 'bad': {}, 'ok2': {}}\n"
        f"run_in_processes({{}}, runs, 'data.parquet', None, 2, worker=h.{worker}, "
        "initializer=None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].endswith(expected)
    assert "failed in its worker process" in out.stderr  # the worker's traceback, logged


def _in_processes(worker: str, tmp_path, runs: tuple[str, ...], **options) -> list[str]:
    """The command line of a process of its own that trains ``runs`` with
    ``run_in_processes`` in 2 workers of the stand-in ``worker`` (tests/helpers/training.py;
    ``options`` its keyword arguments, as Python source)."""
    import sys

    extra = "".join(f", {key}={value}" for key, value in options.items())
    code = (
        "import sys; sys.path.insert(0, 'tests'); import helpers.training as h; "
        "from isoflow.train_workers import run_in_processes\n"
        f"runs = {{name: {{}} for name in {list(runs)!r}}}\n"
        f"run_in_processes({{}}, runs, {str(tmp_path / 'data.parquet')!r}, None, 2, "
        f"worker=h.{worker}{extra})"
    )
    return [sys.executable, "-c", code]


def _train_in_processes(worker: str, tmp_path, **options) -> subprocess.CompletedProcess:
    """``run_in_processes`` of runs ok1, bad, ok2 in 2 workers of the stand-in ``worker``,
    in a process of its own; the timeout is what fails if the job hangs."""
    command = _in_processes(worker, tmp_path, ("ok1", "bad", "ok2"), **options)
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=90)


def _gone(pid_file) -> bool:
    """Whether the process whose id ``pid_file`` holds has ended (and been waited for)."""
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


def test_a_train_worker_killed_outright_ends_the_job_naming_its_run(tmp_path):
    # A worker killed by the kernel's OOM killer (SIGKILL) was replaced silently by
    # multiprocessing.Pool and its run never came back: imap_unordered waited forever and the
    # SLURM job hung until its time limit. Now the job ends at once with one line naming the
    # run, the signal and the settings to change, and the other worker does not outlive it.
    out = _train_in_processes("worker_killed", tmp_path, initializer=None)
    assert out.returncode == 1
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("RuntimeError: run bad: its train worker process was killed by signal")
    assert "SIGKILL (out of memory?" in line
    assert "raise resources.train_mem_mb or lower resources.train_processes" in line
    assert line.endswith("; run ok1 stopped with it")
    assert _gone(tmp_path / "ok1.pid")  # ok1's worker, mid-run, was stopped and waited for
    assert not (tmp_path / "ok2.pid").exists()  # never started


def test_a_train_worker_deaf_to_sigterm_is_killed_when_another_run_fails(tmp_path):
    # Lightning catches SIGTERM and stops only at the next step: the other workers get
    # grace_s seconds, then SIGKILL, so a failure still ends the job at once and leaves no
    # worker behind (Pool.terminate waited for them without end)
    start = time.monotonic()
    out = _train_in_processes("worker_deaf_to_sigterm", tmp_path, initializer=None, grace_s=1.0)
    assert out.returncode == 1
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .endswith("RuntimeError: run bad: KeyError: 'no such column'")
    )
    assert _gone(tmp_path / "ok1.pid")
    assert time.monotonic() - start < 60  # not the stand-in's 120 s of training


def _fake_scontrol(tmp_path, script: str, **env) -> dict[str, str]:
    """The environment of a SLURM job 12345 (not an array job) whose `scontrol` is ``script``
    (a /bin/sh body), put first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / "scontrol").chmod(0o755)
    out = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out.update(SLURM_JOB_ID="12345", **env)
    out.pop("SLURM_ARRAY_JOB_ID", None)
    return out


def _requeue_in_processes(tmp_path, env, prelude: str = "") -> subprocess.CompletedProcess:
    """Runs ok1, bad, ok2 in two worker processes (``helpers.training.
    worker_requeueing_with_attempts``: run bad asks for a requeue) under ``env``, after the
    Python ``prelude`` (patches of the parent process)."""
    import sys

    runs = {name: {"run_dir": str(tmp_path / name)} for name in ("ok1", "bad", "ok2")}
    code = (
        "import sys; sys.path.insert(0, 'tests'); import helpers.training as h; "
        "from isoflow.train_workers import run_in_processes\n"
        + prelude
        + f"run_in_processes({{}}, {runs!r}, {str(tmp_path / 'data.parquet')!r}, None, 2, "
        "worker=h.worker_requeueing_with_attempts, initializer=None, grace_s=5.0)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=90
    )


def _started_in_processes(worker: str, tmp_path, stderr=subprocess.PIPE, **options):
    """``run_in_processes`` of runs ok1 and ok2 in 2 workers of the stand-in ``worker``
    (tests/helpers/training.py, each writing ``<run>.pid``), started in a process of its
    own; returned once both runs are training (their pid files written)."""
    command = _in_processes(worker, tmp_path, ("ok1", "ok2"), initializer=None, **options)
    job = subprocess.Popen(command, cwd=REPO, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"{n}.pid").exists() for n in ("ok1", "ok2")):
            assert time.monotonic() < deadline and job.poll() is None
            time.sleep(0.1)
    except BaseException:
        job.kill()
        job.wait()
        raise
    return job


def test_a_train_job_stopped_by_sigterm_stops_its_workers(tmp_path):
    # Snakemake (or a user) stopping the job sends its process SIGTERM: by default that ended
    # the parent alone, and each daemon worker trained its run to the end, orphaned
    job = _started_in_processes("worker_sleeping", tmp_path, grace_s=1.0)
    try:
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=30) == 143
    finally:
        job.kill()
        job.communicate()
    assert _gone(tmp_path / "ok1.pid") and _gone(tmp_path / "ok2.pid")


@pytest.mark.parametrize("every_run", [False, True])
def test_a_train_worker_that_stops_to_requeue_requeues_the_job_once(tmp_path, every_run):
    # A run that RequeueBeforeTimeLimit stopped called scontrol requeue in its worker and
    # os._exit(0): the parent saw a worker gone without its run and failed the job ("exited
    # with code 0"), and with each run at the limit each worker called scontrol, a refused
    # second call becoming the job's last line. The requeue is the job's: the parent stops
    # the other workers, calls scontrol once and exits 0, as requeue_job in one process.
    called = tmp_path / "scontrol.calls"
    env = _fake_scontrol(tmp_path, f'echo "$@" >> {called}', REQUEUE_ALL="1" if every_run else "")
    command = _in_processes(
        "worker_requeueing", tmp_path, ("ok1", "bad", "ok2"), initializer=None, grace_s=5.0
    )
    command[-1] += "\nprint('returned')"
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "returned" not in out.stdout  # it ended as requeue_job does: nothing more runs
    assert called.read_text() == "requeue 12345\n"  # once
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("requeued: SLURM job 12345, by run ")
    assert "requeued by run " in out.stderr and "exited with code" not in out.stderr
    if not every_run:
        assert "by run bad: test: 10 s left" in last
        assert _gone(tmp_path / "ok1.pid")  # ok1's worker was stopped and waited for


@pytest.mark.parametrize(
    "scontrol",
    [
        "exit 0",
        # as SLURM does: the requeued job's processes get SIGTERM as soon as scontrol returns,
        # the parent before it has written the endings (by default SIGTERM ended it silently)
        "kill -TERM $PPID; exit 0",
    ],
    ids=["requeued", "sigterm-right-after"],
)
def test_a_requeue_in_a_train_worker_ends_every_stopped_runs_attempt(tmp_path, scontrol):
    # With train_processes > 1 the requeue was written to the job's stderr only (the SLURM
    # log, emptied when the requeued job starts), and the run stopped with it got no last
    # line in its attempts log: its attempt just ended, as after a node's crash. Now each
    # attempt the requeue ends says so, and where the run resumes from.

    out = _requeue_in_processes(tmp_path, _fake_scontrol(tmp_path, scontrol))
    assert out.returncode == 0, out.stderr
    stopped = (tmp_path / "ok1" / "checkpoints" / "train.log").read_text().splitlines()
    assert stopped[-1] == (
        "==== attempt 1 stopped: SLURM job 12345 requeued by run bad (test: 10 s left); "
        "resumes from its last checkpoint (last.ckpt, written at the end of epoch 4)"
    )
    requeuing = (tmp_path / "bad" / "checkpoints" / "train.log").read_text().splitlines()
    assert requeuing[-1] == (
        "==== attempt 1 requeued: SLURM job 12345, by run bad: test: 10 s left; "
        "resumes from its last checkpoint (last.ckpt, written at the end of epoch 2)"
    )
    assert not (tmp_path / "ok2").exists()  # never started: no attempt to end


def test_a_requeue_reads_no_checkpoint_body_before_scontrol(tmp_path):
    # The parent named the checkpoint each run resumes from by checking every member's CRC-32
    # (the whole file: 3.7 s per 2 GB checkpoint from the disk here, docs/benchmarks.md,
    # "Requeue endings") of every run, while the job's time ran out, before scontrol. Now
    # only the central directory and the pickle; the requeued attempt checks its checkpoint
    # whole. Every zip member opened in the parent is logged beside scontrol's call.

    events = tmp_path / "events"
    env = _fake_scontrol(tmp_path, f'echo "scontrol $@" >> {events}')
    prelude = (
        "import zipfile\n"
        "member = zipfile.ZipFile.open\n"
        "def logged(self, name, *args, **kwargs):\n"
        f"    with open({str(events)!r}, 'a') as out:\n"
        "        out.write(f'read {self.filename}: {name}\\n')\n"
        "    return member(self, name, *args, **kwargs)\n"
        "zipfile.ZipFile.open = logged\n"
    )
    out = _requeue_in_processes(tmp_path, env, prelude)
    assert out.returncode == 0, out.stderr
    assert events.read_text().splitlines() == ["scontrol requeue 12345"]
    # the endings still name the checkpoint and its epoch
    requeuing = (tmp_path / "bad" / "checkpoints" / "train.log").read_text().splitlines()
    assert requeuing[-1].endswith("(last.ckpt, written at the end of epoch 2)")


@pytest.mark.parametrize("case", ["not-begun", "scontrol-fails"])
def test_a_requeue_ends_only_attempts_begun_in_this_job_and_only_once_requeued(tmp_path, case):
    # "not-begun": run ok1 is stopped before its attempt in this job began; its attempts log
    # holds an earlier job's attempt, which is not this requeue's to end. "scontrol-fails":
    # the requeue is refused; no attempt says it was requeued or stopped by it (the endings
    # are written once scontrol succeeds) and the job fails with scontrol's error.
    import sys

    scontrol = "echo refused >&2; exit 1" if case == "scontrol-fails" else "exit 0"
    env = _fake_scontrol(tmp_path, scontrol)
    old = (
        "==== attempt 1 of ok1: SLURM job 999, host h, started 2024-05-01T10:00:00+00:00, "
        "from scratch (no checkpoint)\nan earlier job's record\n"
    )
    log_of = {name: tmp_path / name / "checkpoints" / "train.log" for name in ("ok1", "bad")}
    worker = "worker_requeueing_with_attempts"
    if case == "not-begun":
        worker = "worker_requeueing_before_ok1_begins"
        log_of["ok1"].parent.mkdir(parents=True)
        log_of["ok1"].write_text(old)
    runs = {name: {"run_dir": str(tmp_path / name)} for name in ("ok1", "bad", "ok2")}
    code = (
        "import sys; sys.path.insert(0, 'tests'); import helpers.training as h; "
        "from isoflow.train_workers import run_in_processes\n"
        f"run_in_processes({{}}, {runs!r}, {str(tmp_path / 'data.parquet')!r}, None, 2, "
        f"worker=h.{worker}, initializer=None, grace_s=5.0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=90
    )
    requeuing = log_of["bad"].read_text().splitlines()
    if case == "not-begun":
        assert out.returncode == 0, out.stderr
        assert log_of["ok1"].read_text() == old
        assert requeuing[-1].startswith("==== attempt 1 requeued: SLURM job 12345, by run bad")
    else:
        assert out.returncode == 1
        assert "scontrol requeue:12345: failed (refused)" in out.stderr.strip().splitlines()[-1]
        stopped = log_of["ok1"].read_text()
        assert "==== attempt 1 stopped" not in stopped and "requeued:" not in stopped
        assert not any("requeued:" in line for line in requeuing)


def test_a_train_worker_stopped_by_sigterm_names_the_stop(tmp_path):
    # Lightning's SIGTERMException (a SystemExit without a code) got past the worker's
    # ``except Exception``: the worker exited 0 and the job said "exited with code 0 (its
    # error, if it wrote one, is above)" with nothing above, and no signal named
    out = _train_in_processes("worker_stopped_by_sigterm", tmp_path, initializer=None)
    assert out.returncode == 1
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("RuntimeError: run bad: SystemExit: stopped (SystemExit; ")
    assert "stopped by SIGTERM" in line and "raise resources.train_mem_mb" in line


def test_a_train_worker_that_ends_without_its_run_says_so():
    from isoflow.train_workers import _died

    text = str(_died("bad", 0, ["ok1"]))
    assert text == (
        "run bad: its train worker process ended without returning its run (exit code 0); "
        "run ok1 stopped with it"
    )


def test_a_second_sigterm_while_the_workers_stop_leaves_none_running(tmp_path):
    # A second SIGTERM (or Ctrl-C) during the cleanup raised out of it and left the workers
    # running: multiprocessing's exit hook then waited for them, here the stand-in's 120 s.
    # And the workers were stopped in turn, each given grace_s: 2 x 5 s here. Now the
    # cleanup ignores both signals and gives every worker the same one deadline.
    job = _started_in_processes("worker_deaf_to_sigterm", tmp_path, grace_s=5.0)
    try:
        time.sleep(0.5)  # each stand-in ignores SIGTERM by now
        start = time.monotonic()
        job.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        job.send_signal(signal.SIGTERM)  # again, while the workers are being stopped
        assert job.wait(timeout=60) == 143
        assert time.monotonic() - start < 8.5  # one 5-s deadline for both, not 10 s
        assert _gone(tmp_path / "ok1.pid") and _gone(tmp_path / "ok2.pid")
    finally:
        job.kill()
        job.communicate()


def _ended(pid_file) -> bool:
    """Whether the process whose id ``pid_file`` holds has ended, waited for or not (an
    orphan's zombie, where process 1 does not reap, counts as ended)."""
    try:
        with open(f"/proc/{int(pid_file.read_text())}/stat") as stat:
            state = stat.read()
    except FileNotFoundError:
        return True
    return state.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_train_workers_end_with_their_parent_killed_outright(tmp_path):
    # The job's process SIGKILLed (no cleanup runs): its workers, orphaned, trained their
    # runs to the end, two writers on one run folder if Snakemake reran the job meanwhile
    # no pipe: reading one would wait for the orphans, which hold its end
    job = _started_in_processes("worker_sleeping", tmp_path, stderr=subprocess.DEVNULL)
    pids = [tmp_path / f"{n}.pid" for n in ("ok1", "ok2")]
    job.kill()
    job.wait()
    deadline = time.monotonic() + 5
    while not all(_ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid.read_text() for pid in pids if not _ended(pid)]
    for pid in alive:  # leave no stand-in behind
        os.kill(int(pid), signal.SIGKILL)
    assert not alive


def test_a_workers_input_error_whose_record_does_not_pickle_keeps_its_line(tmp_path):
    # the failure sent back held the InputError's raw record: one that does not pickle (a
    # lock) killed the worker on the send, and the job said only "exited with code 1"
    out = _train_in_processes("worker_raising_unpicklable_input_error", tmp_path, initializer=None)
    assert out.returncode == 1
    line = out.stderr.strip().splitlines()[-1]
    assert re.search(
        r"InputError: .*data\.parquet:<unlocked _thread\.lock .*>: tpm is negative$", line
    )
    assert "exited with code" not in out.stderr


def test_a_worker_stopped_as_lightning_stops_ends_without_waiting_for_sigkill(tmp_path):
    # a worker whose run Lightning stopped (SIGTERMException) sent its outcome and waited for
    # another task, its SIGTERM handler still set, until the parent's SIGKILL grace_s later
    start = time.monotonic()
    out = _train_in_processes(
        "worker_stopping_as_lightning", tmp_path, initializer=None, grace_s=30.0
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].endswith("run bad: KeyError: 'no such column'")
    assert _gone(tmp_path / "ok1.pid")
    assert time.monotonic() - start < 25  # not grace_s


def test_a_train_worker_that_cannot_start_ends_the_job(tmp_path):
    # an initializer that raises: Pool started the worker again and again, for ever
    out = _train_in_processes(
        "worker_raising_key_error", tmp_path, initializer="h.initializer_raising"
    )
    assert out.returncode == 1
    assert "OSError: no torch here" in out.stderr  # the worker's own traceback
    assert re.search(
        r"RuntimeError: run (ok1|bad): its train worker process exited with code 1 ",
        out.stderr.strip().splitlines()[-1],
    )


def test_a_workers_input_error_class_is_looked_up_among_isoflows_only():
    from isoflow.download import DownloadError
    from isoflow.train_workers import _input_error_class

    assert _input_error_class(["isoflow.download", "DownloadError"]) is DownloadError
    assert _input_error_class(["isoflow.errors", "InputError"]) is InputError
    for name in (
        ["isoflow.download", "TransientError"],  # not an InputError
        ["isoflow.download", "NoSuchError"],
        ["isoflow.no_such_module", "X"],
        ["subprocess", "CalledProcessError"],  # not isoflow's
        None,  # a failure recorded without its class
    ):
        assert _input_error_class(name) is InputError


def record_steps(monkeypatch) -> list[dict[str, float]]:
    """Per optimizer step of the runs that follow: the LR of its first parameter group and
    the total L2 norm of the gradients it applied (after any clipping)."""
    steps: list[dict[str, float]] = []
    configure = IsoFormerModule.configure_optimizers

    def after_step(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        steps.append({"lr": optimizer.param_groups[0]["lr"], "grad_norm": float(norm)})

    def recording(self):
        configured = configure(self)
        optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
        optimizer.register_step_post_hook(after_step)
        return configured

    monkeypatch.setattr(IsoFormerModule, "configure_optimizers", recording)
    return steps


def test_grad_clip_bounds_the_gradient_norm(dataset, tmp_path, monkeypatch):
    path, _ = dataset
    experiment = {"modalities": FAST}
    steps = record_steps(monkeypatch)
    run_experiment(config_with(max_epochs=1), experiment, path, tmp_path / "free")
    free = [s["grad_norm"] for s in steps]
    steps.clear()
    run_experiment(config_with(max_epochs=1, grad_clip=1e-3), experiment, path, tmp_path / "clip")
    clipped = [s["grad_norm"] for s in steps]
    assert len(clipped) == len(free) > 1
    assert min(free) > 1e-3, "unclipped gradients this small cannot show the clipping"
    assert max(clipped) <= 1e-3 * (1 + 1e-4), clipped


def test_lr_warms_up_then_follows_a_cosine(dataset, tmp_path, monkeypatch):
    path, _ = dataset
    lr = 3e-3
    steps = record_steps(monkeypatch)
    config = config_with(max_epochs=3, lr=lr, warmup_steps=3, schedule="cosine")
    run_experiment(config, {"modalities": FAST}, path, tmp_path / "steps")
    total = len(steps)  # patience 10: all three epochs run
    assert total > 6
    expected = [lr * (k + 1) / 4 for k in range(3)] + [
        lr * 0.5 * (1 + np.cos(np.pi * (k - 3) / (total - 3))) for k in range(3, total)
    ]
    np.testing.assert_allclose([s["lr"] for s in steps], expected, rtol=1e-9, atol=1e-15)
    after = [s["lr"] for s in steps[3:]]
    assert after[0] == lr and np.all(np.diff(after) < 0) and after[-1] < lr / 10

    # a fraction of the run's steps, and a constant LR after the warmup
    steps.clear()
    config = config_with(max_epochs=3, lr=lr, warmup_steps=0.5, schedule="constant")
    run_experiment(config, {"modalities": FAST}, path, tmp_path / "fraction")
    warmup = round(0.5 * total)
    expected = [lr * (k + 1) / (warmup + 1) for k in range(warmup)] + [lr] * (total - warmup)
    np.testing.assert_allclose([s["lr"] for s in steps], expected, rtol=1e-9)


def test_norms_and_biases_are_not_decayed():
    """decay_norms_biases: false puts every bias and normalisation-layer parameter (encoders,
    aggregator, head) in a group without weight decay, every other weight in the decayed one;
    the default keeps one decayed group over all trained parameters, as before the key."""
    config = config_with(weight_decay=0.05, decay_norms_biases=False)
    module = IsoFormerModule(config, {**EXPERIMENT_DEFAULTS, "modalities": ALL}, TISSUES)
    names = {id(p): name for name, p in module.named_parameters()}
    norm_params = {
        id(p)
        for m in module.modules()
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._NormBase))
        for p in m.parameters(recurse=False)
    }
    decay, no_decay = module.configure_optimizers().param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    trained = {n for n, p in module.named_parameters() if p.requires_grad}
    biases = {n for n in trained if n.endswith("bias")}  # also attention's in_proj_bias
    norms = {names[i] for i in norm_params}
    assert biases and norms and no_decay_names == biases | norms
    assert decay_names == trained - no_decay_names
    assert {"model.aggregator.missing_query", "model.head.weight"} <= decay_names

    (single,) = (
        IsoFormerModule(
            config_with(weight_decay=0.05), {**EXPERIMENT_DEFAULTS, "modalities": ALL}, TISSUES
        )
        .configure_optimizers()
        .param_groups
    )
    assert single["weight_decay"] == 0.05 and len(single["params"]) == len(trained)


@pytest.mark.slow
def _ends_as_uninterrupted(config, experiment, path, tmp_path) -> None:
    """The run in ``tmp_path / "requeued"`` wrote the metrics and history of the same run
    trained without a stop (in ``tmp_path / "uninterrupted"``)."""
    run_experiment(config, experiment, path, tmp_path / "uninterrupted")
    for name in ("metrics.json", "history.csv"):
        assert (tmp_path / "requeued" / name).read_text() == (
            tmp_path / "uninterrupted" / name
        ).read_text(), name


def test_slurm_warning_requeues_at_the_epoch_end_and_resume_matches(dataset, tmp_path, monkeypatch):
    """SLURM's USR1 before the time limit (here sent during epoch 1) lets that epoch finish
    and write its checkpoints, then requeues instead of going on; the requeued job resumes
    and ends bit-identical to an uninterrupted run. (tests/workflow/test_slurm.py runs it on
    a real SLURM cluster.)"""
    path, _ = dataset
    config = config_with(max_epochs=4)
    experiment = {"modalities": FAST, "seed": 2}

    class OnSlurm:  # a SLURM job as run_experiment sees it, with a local process environment
        detect = staticmethod(lambda: True)

        def __new__(cls, **kwargs):
            return LightningEnvironment()

    monkeypatch.setattr(isoflow.train, "SLURMEnvironment", OnSlurm)

    class Requeued(Exception):
        pass

    def requeue_job(rank, reason):
        assert rank == 0
        raise Requeued

    monkeypatch.setattr(isoflow.train, "requeue_job", requeue_job)
    epoch_end = History.on_train_epoch_end

    def signal_in_epoch_1(self, trainer, module):
        if trainer.current_epoch == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs before the next line
        epoch_end(self, trainer, module)

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(History, "on_train_epoch_end", signal_in_epoch_1)
            with pytest.raises(Requeued):
                run_experiment(config, experiment, path, tmp_path / "requeued")
        signal.signal(signal.SIGUSR1, previous)
        checkpoint = torch.load(
            tmp_path / "requeued" / "checkpoints" / "last.ckpt", weights_only=False
        )
        assert checkpoint["epoch"] == 1  # stopped after writing epoch 1's checkpoint
        assert not (tmp_path / "requeued" / "metrics.json").exists()
        run_experiment(config, experiment, path, tmp_path / "requeued")  # the requeued job
    finally:
        signal.signal(signal.SIGUSR1, previous)
    monkeypatch.undo()
    _ends_as_uninterrupted(config, experiment, path, tmp_path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-02:03:04", 93784.0),
        ("12:00:05", 43205.0),
        ("59:59", 3599.0),
        ("0:07", 7.0),
        (" 3:00 \n", 180.0),
        ("UNLIMITED", float("inf")),
        ("INVALID", 0.0),
        ("NOT_SET", None),
    ],
)
def test_squeue_time_left_is_read_in_seconds(text, seconds):
    assert parse_time_left(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "5", "1-05:00", "10:61", "1:2:3:4", "abc", "-1:00", "0:75:00", "1-00:60:00"]
)
def test_a_time_left_squeue_never_prints_is_refused(text):
    with pytest.raises(ValueError, match="not a SLURM time left"):
        parse_time_left(text)


def test_the_job_requeues_when_another_epoch_would_not_fit():
    # another epoch needs factor x the slowest one + two checkpoint writes, at least min_s
    assert not time_to_requeue(400, 100, 10, 1.5, 300)  # needs max(300, 170)
    assert time_to_requeue(299, 100, 10, 1.5, 300)
    assert time_to_requeue(999, 600, 50, 1.5, 300)  # needs 1000
    assert not time_to_requeue(1000, 600, 50, 1.5, 300)
    assert not time_to_requeue(float("inf"), 1e9, 1e9, 1.5, 300)


class _Strategy:
    def reduce_boolean_decision(self, decision, all=True):
        return decision


class _Trainer:
    is_global_zero = True
    strategy = _Strategy()
    should_stop = False
    current_epoch = 0
    max_epochs = 1000


def _run_epochs(callback, clock, epochs):
    """Epochs of ``epochs`` (training, checkpoint write) seconds each on a fake clock; the
    epoch after which the trainer was told to stop (None: never)."""
    trainer = _Trainer()
    for number, (train_s, write_s) in enumerate(epochs):
        callback.on_train_epoch_start(trainer, None)
        clock[0] += train_s
        callback.on_train_epoch_end(trainer, None)
        if trainer.should_stop:
            return number
        clock[0] += write_s
    return None


def test_the_time_left_stops_training_at_the_epoch_it_runs_short(caplog):
    clock = [0.0]
    reads = []

    def time_left():  # a job limit of 1000 s that started at clock 0
        reads.append(clock[0])
        return 1000.0 - clock[0]

    callback = RequeueBeforeTimeLimit(
        1.5, 60, time_left=time_left, clock=lambda: clock[0], own_job=lambda: True
    )
    # epochs of 100 s and writes of 20 s: the epoch ending at 580 leaves 420 (needs 190), the
    # one ending at 700 leaves 300 (continues), at 820 leaves 180 < 1.5 x 100 + 2 x 20
    stopped = _run_epochs(callback, clock, [(100, 20)] * 8)
    assert stopped == 6 and callback.pending
    assert callback.slowest_epoch_s == 100 and callback.checkpoint_s == 20
    assert len(reads) == 7  # each epoch end: more than POLL_S apart
    assert "stopping at this epoch's end to requeue" in caplog.text


def _limited_callback(**options):
    """A callback on a fake clock whose job limit (``limit[0]``, 10,000 s) a test can cut;
    ``reads``: the clock at each squeue read."""
    clock = [0.0]
    limit = [10_000.0]
    reads = []

    def time_left():
        reads.append(clock[0])
        return limit[0] - clock[0]

    callback = RequeueBeforeTimeLimit(
        1.5, 300, time_left=time_left, clock=lambda: clock[0], own_job=lambda: True, **options
    )
    return clock, limit, reads, callback


def test_the_time_left_is_counted_down_between_reads_and_follows_a_cut_limit():
    clock, limit, reads, callback = _limited_callback()
    trainer = _Trainer()
    for _ in range(3):  # 5 s epochs: one read per POLL_S
        callback.on_train_epoch_start(trainer, None)
        clock[0] += 5
        callback.on_train_epoch_end(trainer, None)
    assert reads == [5.0] and not trainer.should_stop
    limit[0] = 300.0  # scontrol update TimeLimit: seen at the first read POLL_S later
    while not trainer.should_stop:
        callback.on_train_epoch_start(trainer, None)
        clock[0] += 5
        callback.on_train_epoch_end(trainer, None)
    assert clock[0] == 5.0 + RequeueBeforeTimeLimit.POLL_S and len(reads) == 2


def test_a_shorter_poll_sees_a_cut_limit_at_the_next_epoch():
    """train.requeue_poll_s: with 1 s epochs a run of 30 epochs ended within one 30-s read
    of its cut limit and never saw it (the SLURM test on a fast idle machine)."""
    clock, limit, reads, callback = _limited_callback(poll_s=1)
    trainer = _Trainer()
    for _ in range(3):
        callback.on_train_epoch_start(trainer, None)
        clock[0] += 1
        callback.on_train_epoch_end(trainer, None)
    assert reads == [1.0, 2.0, 3.0] and not trainer.should_stop
    limit[0] = 200.0  # cut: seen at the very next epoch's end
    callback.on_train_epoch_start(trainer, None)
    clock[0] += 1
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop and callback.pending


def test_a_failing_squeue_is_logged_once_and_training_goes_on(caplog):
    clock = [0.0]
    calls = []

    def time_left():
        calls.append(1)
        raise OSError("squeue -j 7 exited 1: slurm_load_jobs error")

    callback = RequeueBeforeTimeLimit(
        1.5, 300, time_left=time_left, clock=lambda: clock[0], own_job=lambda: True
    )
    assert _run_epochs(callback, clock, [(40, 1)] * 5) is None
    assert not callback.pending and len(calls) == 5
    assert caplog.text.count("time left before the SLURM time limit not known") == 1


def test_no_requeue_after_the_last_epoch_nor_one_an_early_stop_ends():
    """A finished training went back into the queue (hours) to test in seconds, and where the
    job could not be requeued, a complete run failed."""

    def short():
        return 10.0  # far under any margin

    for current, stopping in [(3, False), (1, True)]:
        callback = RequeueBeforeTimeLimit(1.5, 300, time_left=short, own_job=lambda: True)
        trainer = _Trainer()
        trainer.current_epoch, trainer.max_epochs, trainer.should_stop = current, 4, stopping
        callback.on_train_epoch_start(trainer, None)
        callback.on_train_epoch_end(trainer, None)
        assert not callback.pending, (current, stopping)
    callback = RequeueBeforeTimeLimit(1.5, 300, time_left=short, own_job=lambda: True)
    trainer = _Trainer()
    trainer.current_epoch, trainer.max_epochs = 2, 4  # one epoch left: requeue
    callback.on_train_epoch_start(trainer, None)
    callback.on_train_epoch_end(trainer, None)
    assert callback.pending and trainer.should_stop


def test_only_the_executors_own_train_job_requeues_itself(caplog):
    """In a user's own allocation (sbatch --wrap "snakemake ...", salloc) a requeue would
    start every job in it again: only a job the SLURM executor submitted for rule train
    (comment rule_train...) requeues by time; asked once when squeue answers."""
    asked = []

    def own_job():
        asked.append(1)
        return False

    clock = [0.0]
    callback = RequeueBeforeTimeLimit(
        1.5, 300, time_left=lambda: 10.0, clock=lambda: clock[0], own_job=own_job
    )
    assert _run_epochs(callback, clock, [(40, 1)] * 3) is None
    assert not callback.pending and len(asked) == 1
    assert caplog.text.count("not requeueing before the SLURM time limit") == 1


def test_a_failing_squeue_for_the_jobs_comment_is_asked_again(caplog):
    """A failed ask counted as 'not the executor's job' for the rest of the training, so one
    moment's unresponsive slurmctld took the requeue from the whole run: it is asked again,
    at most every POLL_S seconds, and the job requeues once squeue answers."""
    asked = []

    def own_job():
        asked.append(clock[0])
        if len(asked) < 3:
            raise OSError("squeue -j 7 exited 1: Socket timed out on send/recv operation")
        return True

    clock = [0.0]
    callback = RequeueBeforeTimeLimit(
        1.5, 300, time_left=lambda: 10.0, clock=lambda: clock[0], own_job=own_job
    )
    # 20 s epochs and 1 s writes: asked at 20, 62 (>= POLL_S later), 104; requeued then
    stopped = _run_epochs(callback, clock, [(20, 1)] * 8)
    assert asked == [20.0, 62.0, 104.0] and stopped == 4 and callback.pending
    assert caplog.text.count("this job's comment is not known") == 1


def test_the_executors_train_job_is_told_by_its_comment(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    for comment, own in [
        ("rule_train_wildcards_dna_enformer_s0", True),
        ("rule_train", True),
        ("", False),
        ("rule_embed_wildcards_esm2", False),
    ]:
        monkeypatch.setattr(isoflow.lightning, "slurm_job_comment", lambda job, c=comment: c)
        assert isoflow.lightning.executor_train_job() is own, comment


@pytest.mark.slow
def test_slurm_time_limit_requeues_at_the_epoch_end_and_resume_matches(
    dataset, tmp_path, monkeypatch
):
    """In a SLURM job whose time left (squeue) runs short after epoch 1, that epoch finishes
    and writes its checkpoints, then the job requeues instead of going on; the requeued job
    resumes and ends bit-identical to an uninterrupted run. No signal involved."""
    path, _ = dataset
    config = config_with(max_epochs=4)
    experiment = {"modalities": FAST, "seed": 2}

    class OnSlurm:
        detect = staticmethod(lambda: True)

        def __new__(cls, **kwargs):
            return LightningEnvironment()

    monkeypatch.setattr(isoflow.train, "SLURMEnvironment", OnSlurm)
    monkeypatch.setenv("SLURM_JOB_ID", "12345")
    # squeue read at every epoch end (train.requeue_poll_s, which the train job passes on)
    monkeypatch.setitem(isoflow.settings.TRAIN_DEFAULTS, "requeue_poll_s", 1e-9)

    class Requeued(Exception):
        pass

    def requeue_job(rank, reason):
        assert rank == 0
        raise Requeued

    queried = []
    left = iter([10_000.0, 100.0])  # ample after epoch 0, short after epoch 1

    def squeue_time_left(job):
        queried.append(job)
        return next(left)

    with monkeypatch.context() as patch:
        patch.setattr(isoflow.train, "requeue_job", requeue_job)
        patch.setattr(isoflow.lightning, "squeue_time_left", squeue_time_left)
        patch.setattr(isoflow.lightning, "slurm_job_comment", lambda job: "rule_train_wildcards_x")
        with pytest.raises(Requeued):
            run_experiment(config, experiment, path, tmp_path / "requeued")
        assert queried == ["12345", "12345"]
        checkpoint = torch.load(
            tmp_path / "requeued" / "checkpoints" / "last.ckpt", weights_only=False
        )
        assert checkpoint["epoch"] == 1  # stopped after writing epoch 1's checkpoint
        assert not (tmp_path / "requeued" / "metrics.json").exists()
        patch.setattr(isoflow.lightning, "squeue_time_left", lambda job: float("inf"))
        run_experiment(config, experiment, path, tmp_path / "requeued")  # the requeued job
    monkeypatch.undo()
    _ends_as_uninterrupted(config, experiment, path, tmp_path)


def test_worker_processes_take_the_costliest_runs_first():
    # the two demo workers ended 14 s apart when the last run was a three-modality one taken
    # in config order; costliest first, they end within about one short run of each other
    from isoflow.train_workers import expected_cost

    runs = {
        "dna": {"experiment": {"modalities": ["dna"]}},
        "all_shuffled": {
            "experiment": {"modalities": ["dna", "rna", "protein"], "shuffle_targets": True}
        },
        "all_concat": {
            "experiment": {"modalities": ["dna", "rna", "protein"], "aggregator": "concat"}
        },
        "all": {
            "experiment": {"modalities": ["dna", "rna", "protein"], "aggregator": "cross_attention"}
        },
    }
    order = sorted(runs, key=lambda name: expected_cost(runs[name]), reverse=True)
    assert order == ["all", "all_shuffled", "all_concat", "dna"]


def test_prefetched_batches_are_the_batches_and_train_bit_identically(dataset, tmp_path):
    # train.prefetch_batches: the next batches gathered in a background thread, the same
    # batches in the same order, so every output is byte-identical
    from isoflow.loader import PrefetchDataLoader

    path, _ = dataset
    caches = tiny_caches(path, tmp_path)
    plain = IsoformDataModule(path, FAST, cache_dirs=caches, batch_size=8)
    ahead = IsoformDataModule(path, FAST, cache_dirs=caches, batch_size=8, prefetch_batches=2)
    for data in (plain, ahead):
        data.setup()
    loaders = plain.train_dataloader(), ahead.train_dataloader()
    assert type(loaders[0]) is not PrefetchDataLoader and type(loaders[1]) is PrefetchDataLoader
    for epoch in (0, 1):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        batches = [list(loader) for loader in loaders]
        assert len(batches[0]) == len(batches[1]) == len(loaders[0]) > 2
        for a, b in zip(*batches, strict=True):
            assert torch.equal(a["index"], b["index"]) and torch.equal(a["target"], b["target"])
            for modality in FAST:
                assert all(
                    torch.equal(x, y)
                    for x, y in zip(a["inputs"][modality], b["inputs"][modality], strict=True)
                )
    # stopping early leaves no thread behind
    iterator = iter(loaders[1])
    next(iterator)
    iterator.close()
    assert not iterator._thread.is_alive()

    config = cache_config(max_epochs=2)
    exp = {"modalities": FAST, "seed": 1}
    run_experiment(config, exp, path, tmp_path / "plain", cache_dirs=caches)
    config["train"]["prefetch_batches"] = 2
    run_experiment(config, exp, path, tmp_path / "ahead", cache_dirs=caches)
    for name in ("metrics.json", "history.csv", "predictions.parquet"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "ahead" / name).read_bytes()


def test_an_error_making_a_prefetched_batch_is_raised_in_order():
    from isoflow.loader import PrefetchDataLoader

    def collate(items):
        if 6 in items:
            raise ValueError("bad item 6")
        return torch.tensor(items)

    loader = PrefetchDataLoader(
        list(range(10)), batch_size=2, collate_fn=collate, prefetch_batches=3
    )
    iterator = iter(loader)
    assert [next(iterator).tolist() for _ in range(3)] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="bad item 6"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_lightning_can_rebuild_a_prefetching_loader_with_another_sampler():
    # DDP: Lightning re-instantiates a train loader with a distributed sampler; the prefetch
    # setting must survive
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    from isoflow.loader import PrefetchDataLoader

    data = list(range(8))
    loader = PrefetchDataLoader(data, batch_size=2, prefetch_batches=3)
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=False)
    rebuilt = _update_dataloader(loader, sampler)
    assert type(rebuilt) is PrefetchDataLoader and rebuilt.prefetch_batches == 3
    assert [b.tolist() for b in rebuilt] == [[1, 3], [5, 7]]


def test_compiled_training_matches_eager_and_keeps_the_checkpoint_format(
    dataset, tmp_path, monkeypatch
):
    # train.compile on the CPU through dynamo + AOTAutograd without inductor's code
    # generation ("aot_eager": the forward and backward graphs traced as inductor gets them,
    # seconds instead of minutes): the graphs are compiled, training gives the eager run's
    # metrics, and the checkpoint holds the same parameter names.
    from torch._dynamo.utils import counters

    path, _ = dataset
    experiment = {"modalities": FAST}
    run_experiment(config_with(max_epochs=1), experiment, path, tmp_path / "eager")
    monkeypatch.setattr(isoflow.train, "COMPILE_BACKEND", "aot_eager")
    predict = isoflow.train.predict
    eager_at_test = []

    def recording(module, *args, **kwargs):
        eager_at_test.append(module.model._compiled_call_impl is None)
        return predict(module, *args, **kwargs)

    monkeypatch.setattr(isoflow.train, "predict", recording)
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(config_with(max_epochs=1, compile=True), experiment, path, tmp_path / "comp")
    # full batches take the encoders' path without boolean indexing, whose backward (a
    # data-dependent nonzero) inductor could not compile: a graph break and an "Error
    # detected in IndexPutBackward0" warning per compile on the H200
    assert not [w for w in caught if "IndexPutBackward" in str(w.message)]
    assert counters["stats"]["unique_graphs"] > 0
    # the test split is predicted eager, as the bundle's check and an exported model predict
    assert eager_at_test == [True]
    eager = json.loads((tmp_path / "eager" / "metrics.json").read_text())
    compiled = json.loads((tmp_path / "comp" / "metrics.json").read_text())
    assert set(eager["mean"]) == {"r2", "spearman", "pearson"}
    for key, value in eager["mean"].items():
        assert compiled["mean"][key] == pytest.approx(value, abs=1e-4), key
    ckpts = {
        run: torch.load(
            next((tmp_path / run / "checkpoints").glob("last.ckpt")), weights_only=False
        )
        for run in ("eager", "comp")
    }
    assert list(ckpts["comp"]["state_dict"]) == list(ckpts["eager"]["state_dict"])
