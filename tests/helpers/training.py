"""A few dozen transcripts in the dataset parquet format, with a genome FASTA, for training
tests; targets depend on the sequences so a model can learn something."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from isoflow.dataset import write_dataset

TISSUES = ["Liver", "Brain", "Testis"]
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"

# Small enough that a training epoch takes well under a second on one CPU core.
TINY_CONFIG = {
    "rna": {"max_nt": 120, "truncate": "keep_5prime"},
    "protein": {"max_aa": 40},
    "encoders": {
        "enformer": {
            "source": "tiny",
            "finetune_last": -1,
            "hparams": {
                "dim": 48,
                "depth": 1,
                "heads": 2,
                "attn_dim_key": 8,
                "dim_divisible_by": 8,
                "target_length": 4,
            },
        },
        "nucleotide_transformer": {"source": "tiny", "finetune_last": -1},
        "esm2": {"source": "tiny", "finetune_last": -1, "hparams": {"num_layers": 1}},
    },
    "model": {"d_model": 16, "depth": 1, "heads": 2, "dropout": 0.1},
    "train": {
        "max_epochs": 4,
        "batch_size": 8,
        "lr": 3e-3,
        "patience": 10,
        "progress_bar": False,
        "accelerator": "cpu",
        "log_every_n_steps": 1,
    },
}


def make_dataset(
    tmp_path: Path, n_genes: int = 12, window: int = 512, seed: int = 0
) -> tuple[Path, Path]:
    """Write ``genome.fa`` (+ .fai) and ``dataset.parquet``; return their paths."""
    rng = np.random.default_rng(seed)
    chrom_len = 40_000
    genome = "".join(rng.choice(list("ACGT"), chrom_len))
    fasta = tmp_path / "genome.fa"
    fasta.write_text(
        ">chr1\n" + "\n".join(genome[i : i + 60] for i in range(0, chrom_len, 60)) + "\n"
    )
    pysam.faidx(str(fasta))

    rows = []
    splits = ["train"] * (n_genes - 4) + ["valid"] * 2 + ["test"] * 2
    for g in range(n_genes):
        for t in range(int(rng.integers(2, 5))):
            tss = int(rng.integers(0, chrom_len))
            strand = "+" if rng.random() < 0.5 else "-"
            rna = "".join(rng.choice(list("ACGT"), int(rng.integers(60, 200))))
            protein = None if rng.random() < 0.3 else "".join(rng.choice(list(AMINO_ACIDS), 30))
            gc = (rna.count("G") + rna.count("C")) / len(rna)
            k = 0.0 if protein is None else protein.count("K") / len(protein)
            base = 4 * gc + 10 * k
            rows.append(
                {
                    "transcript_id": f"ENST{g:04d}{t}.1",
                    "gene_id": f"ENSG{g:04d}.1",
                    "gene_name": f"G{g}",
                    "transcript_type": "protein_coding" if protein else "lncRNA",
                    "chrom": "chr1",
                    "strand": strand,
                    "tss": tss,
                    # windows may run past the contig ends: the loader N-pads
                    "window_start": tss - window // 2,
                    "window_end": tss + window // 2,
                    "rna_seq": rna,
                    "protein_seq": protein,
                    "split": splits[g],
                    **{
                        tissue: np.float32(base + i + 0.1 * rng.normal())
                        for i, tissue in enumerate(TISSUES)
                    },
                }
            )
    dataset = tmp_path / "dataset.parquet"
    write_dataset(pd.DataFrame(rows), TISSUES, fasta, dataset)
    return dataset, fasta


# The keys of a run's metrics.json (DESIGN.md "metrics.json"), as the tests hold them.
METRICS_KEYS = {
    "mean",
    "per_tissue",
    "constant_prediction_tissues",
    "within_gene_spearman",
    "within_gene_groups",
    "within_gene_tied",
    "n_test",
    "prediction_spread",
    "collapsed",
}


def train_command(config_path, experiment: dict, dataset_path, run_dir) -> list[str]:
    """``python -m isoflow.train`` for one experiment: the command line Lightning's DDP
    launcher re-runs for the other ranks."""
    return [
        sys.executable,
        "-m",
        "isoflow.train",
        "--config",
        str(config_path),
        "--experiment",
        json.dumps(experiment),
        "--dataset",
        str(dataset_path),
        "--run-dir",
        str(run_dir),
    ]


RUN_OUTPUTS = ("metrics.json", "history.csv", "predictions.parquet")


def rerun_matches(config, experiment, dataset_path, run_dir: Path, whole: Path) -> None:
    """Delete ``run_dir``'s outputs, run it again (it resumes from its checkpoints) and check
    it wrote the uninterrupted run's (``whole``) byte for byte."""
    from isoflow.train import run_experiment

    for name in RUN_OUTPUTS:
        (run_dir / name).unlink()
    run_experiment(config, experiment, dataset_path, run_dir)
    for name in RUN_OUTPUTS:
        assert (run_dir / name).read_bytes() == (whole / name).read_bytes(), name


def worker_raising_input_error(config, name, run, dataset_path, genome_fasta):
    """A stand-in for isoflow.train_workers._run_one (importable by a spawned process,
    torch-free): run ``bad`` raises an InputError, the others return at once."""
    from isoflow.errors import InputError

    if name == "bad":
        raise InputError(dataset_path, "ENST0001.1", "tpm is negative")
    return name, {"loss": 0.0}


def worker_raising_download_error(config, name, run, dataset_path, genome_fasta):
    """As :func:`worker_raising_input_error`, with a subclass of InputError."""
    from isoflow.download import DownloadError

    if name == "bad":
        raise DownloadError("https://example.org/w.bin", "HTTP 404: not found")
    return name, {"loss": 0.0}


def worker_raising_key_error(config, name, run, dataset_path, genome_fasta):
    if name == "bad":
        raise KeyError("no such column")
    return name, {"loss": 0.0}


def worker_killed(config, name, run, dataset_path, genome_fasta):
    """As :func:`worker_raising_input_error`, but the worker of run ``bad`` is killed outright
    (SIGKILL, as the kernel's OOM killer does); every other run writes its process id to
    ``<name>.pid`` beside ``dataset_path`` and trains (sleeps) for two minutes."""
    import os
    import signal
    import time
    from pathlib import Path

    if name == "bad":
        _wait_for(Path(dataset_path).with_name("ok1.pid"))  # run ok1 is training
        os.kill(os.getpid(), signal.SIGKILL)
    Path(dataset_path).with_name(f"{name}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return name, {"loss": 0.0}


def worker_deaf_to_sigterm(config, name, run, dataset_path, genome_fasta):
    """Run ``bad`` raises; every other run ignores SIGTERM (as Lightning's handler defers it
    to the next step), writes its process id as :func:`worker_killed` does, and sleeps."""
    import os
    import signal
    import time
    from pathlib import Path

    if name == "bad":
        _wait_for(Path(dataset_path).with_name("ok1.pid"))  # run ok1 ignores SIGTERM now
        raise KeyError("no such column")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(dataset_path).with_name(f"{name}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return name, {"loss": 0.0}


def worker_sleeping(config, name, run, dataset_path, genome_fasta):
    """Every run writes its process id as :func:`worker_killed` does and trains (sleeps) for
    two minutes."""
    import os
    import time
    from pathlib import Path

    Path(dataset_path).with_name(f"{name}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return name, {"loss": 0.0}


def initializer_raising() -> None:
    """A stand-in for isoflow.train_workers._one_thread that fails (a worker that cannot
    start: under multiprocessing.Pool it was started again and again, forever)."""
    raise OSError("no torch here")


def _wait_for(path) -> None:
    import time

    for _ in range(600):
        if path.exists():
            return
        time.sleep(0.1)


def _train_a_while(name, dataset_path):
    """A stand-in run training: writes its process id beside the dataset as
    :func:`worker_killed` does, then sleeps two minutes; returns its result."""
    import os
    import time
    from pathlib import Path

    Path(dataset_path).with_name(f"{name}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return name, {"loss": 0.0}


def _requeue_bad_else_train(name, dataset_path):
    """Run ``bad`` requeues the job once run ok1 trains (``requeue_job``); the others train
    (:func:`_train_a_while`)."""
    from pathlib import Path

    from isoflow.requeue import requeue_job

    if name == "bad":
        _wait_for(Path(dataset_path).with_name("ok1.pid"))
        requeue_job(0, "test: 10 s left")
    return _train_a_while(name, dataset_path)


def worker_requeueing(config, name, run, dataset_path, genome_fasta):
    """Run ``bad`` stops to requeue the job (as ``isoflow.train`` after a fit that
    ``RequeueBeforeTimeLimit`` stopped: ``requeue_job``) once run ok1 trains; with
    ``REQUEUE_ALL`` set in the environment every run does, at once. The others write their
    process id as :func:`worker_killed` does and train (sleep) for two minutes."""
    import os

    from isoflow.requeue import requeue_job

    if os.environ.get("REQUEUE_ALL"):
        requeue_job(0, f"test: run {name}")
    return _requeue_bad_else_train(name, dataset_path)


def worker_requeueing_with_attempts(config, name, run, dataset_path, genome_fasta):
    """As :func:`worker_requeueing` (run ``bad`` requeues once ``ok1`` trains), each run
    logging its attempt in ``run["run_dir"]`` as ``isoflow.train.run_experiment`` does, with
    a ``last.ckpt`` written at the end of epoch 2 (bad) or 4 (ok1) before it goes on."""
    import torch

    from isoflow.attempts import attempt_logging
    from isoflow.checkpoints import checkpoint_dir

    with attempt_logging(run["run_dir"], True) as attempt:
        attempt.begin(None)
        checkpoints = checkpoint_dir(run["run_dir"])
        epoch = 2 if name == "bad" else 4
        torch.save({"epoch": epoch, "state_dict": {}}, checkpoints / "last.ckpt")
        return _requeue_bad_else_train(name, dataset_path)


def worker_requeueing_before_ok1_begins(config, name, run, dataset_path, genome_fasta):
    """As :func:`worker_requeueing_with_attempts`, but run ``ok1`` is stopped before its
    attempt in this job begins (it writes its process id and sleeps, its attempts log left
    as an earlier job wrote it)."""
    if name != "ok1":
        return worker_requeueing_with_attempts(config, name, run, dataset_path, genome_fasta)
    return _train_a_while(name, dataset_path)


def worker_stopped_by_sigterm(config, name, run, dataset_path, genome_fasta):
    """Run ``bad`` ends as Lightning ends a run after a SIGTERM (its SIGTERMException is a
    SystemExit without a code); the others return at once."""
    if name == "bad":
        raise SystemExit
    return name, {"loss": 0.0}


def worker_raising_unpicklable_input_error(config, name, run, dataset_path, genome_fasta):
    """As :func:`worker_raising_input_error`, its record an object that does not pickle."""
    import threading

    from isoflow.errors import InputError

    if name == "bad":
        raise InputError(dataset_path, threading.Lock(), "tpm is negative")
    return name, {"loss": 0.0}


def worker_stopping_as_lightning(config, name, run, dataset_path, genome_fasta):
    """Run ``bad`` raises once run ok1 trains; every other run handles SIGTERM as Lightning
    does (a flag, then a SystemExit without a code at the next step), writes its process
    id as :func:`worker_killed` does, and trains (sleeps) for two minutes in steps."""
    import os
    import signal
    import time
    from pathlib import Path

    if name == "bad":
        _wait_for(Path(dataset_path).with_name("ok1.pid"))
        raise KeyError("no such column")
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    Path(dataset_path).with_name(f"{name}.pid").write_text(str(os.getpid()))
    for _ in range(1200):
        if received:
            raise SystemExit
        time.sleep(0.1)
    return name, {"loss": 0.0}


@contextlib.contextmanager
def stopped_after_epoch(monkeypatch, epoch: int | None = None):
    """Training inside stops after epoch ``epoch`` (None: the first it runs) with that
    epoch's checkpoints written, as a job killed between epochs leaves them: Lightning's
    ``should_stop`` set in ``History.on_train_epoch_end``, undone on leaving."""
    from isoflow.lightning import History

    epoch_end = History.on_train_epoch_end

    def stop(self, trainer, module):
        epoch_end(self, trainer, module)
        if epoch is None or trainer.current_epoch == epoch:
            trainer.should_stop = True

    with monkeypatch.context() as patch:
        patch.setattr(History, "on_train_epoch_end", stop)
        yield
