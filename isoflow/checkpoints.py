"""A training run's checkpoint bookkeeping: what they were trained from, and where they go.

Inside a run folder (``results/runs/{run}/``, DESIGN.md "Data flow" 8):

- ``checkpoints/`` — ``last.ckpt`` every epoch plus the best by ``val_loss`` (written by
  Lightning's ``ModelCheckpoint``), and ``fingerprint.json``: what they were trained from
  (``run_fingerprint``), and ``train.log``, every attempt's log (``isoflow.attempts``).
  A run resumes from ``last.ckpt`` or a newer SLURM
  ``hpc_ckpt_*.ckpt`` (Lightning's auto-requeue, which earlier versions used; SLURM's
  time limit now requeues at an epoch's end, ``lightning.RequeueBeforeTimeLimit``),
  ``resume_checkpoint``.
- ``previous/<hash>/`` — checkpoints trained with other settings or data, moved aside whole
  (never deleted) when the fingerprint changes; ``<hash>`` is ``fingerprint_hash`` of their
  ``fingerprint.json``. Going back to those settings moves them back and resumes them
  (``prepare_checkpoints``). ``previous/unfit/`` holds what is never resumed nor restored:
  checkpoints that do not fit the model, moved there by hand (``set_aside_command``), and
  checkpoints that are not complete files, moved there by ``resume_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import time
import zipfile
from pathlib import Path
from typing import Any

from isoflow import provenance
from isoflow.errors import InputError
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.files import atomic_path
from isoflow.model.encoders import spec_from_config
from isoflow.settings import (
    TRAIN_DEFAULTS,
    cached_modalities,
    encoder_names,
    model_config,
    protein_config,
    rna_config,
    scoped_settings,
    train_config,
    with_encoder_defaults,
)

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
PREVIOUS_DIR = "previous"
UNFIT_DIR = "unfit"  # under previous/: never resumed nor restored (by hand, or cut short)
FINGERPRINT_FILE = "fingerprint.json"
# the run's own log of its attempts (isoflow.attempts): no checkpoint, it goes where they go
ATTEMPTS_LOG = "train.log"
TESTED_FILE = "tested.json"  # the checkpoint the run's test split was scored with
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"  # Lightning's SLURM auto-requeue (earlier versions)
# Train keys that cannot change the trained weights: left out of the run's fingerprint, so
# changing them (e.g. on the cluster) resumes the trained model instead of setting it aside.
# eval_batch_size: the validation and test loaders draw the same RNG whatever their batch
# size, so the weights are bit-identical (measured: DESIGN.md, train); only the logged val_loss
# moves by float rounding (~1e-7 relative). Not num_workers: with workers the loader's seed
# is drawn from the global RNG once (persistent workers), not once per epoch, so dropout
# masks, hence the weights, differ from epoch 1 on (measured).
# prefetch_batches: the same batches in the same order, made ahead in a thread (test).
# requeue_*: when a SLURM job stops at an epoch's end to be requeued (resumed bit-identically).
NOT_IN_FINGERPRINT = (
    "progress_bar",
    "log_every_n_steps",
    "eval_batch_size",
    "prefetch_batches",
    "requeue_factor",
    "requeue_min_s",
    "requeue_poll_s",
)
# Files in a cache folder that are not the cache: Snakemake's marker of a directory output,
# written by `snakemake --touch` (which must not set every run's checkpoints aside).
NOT_CACHE_FILES = (".snakemake_timestamp",)
# Train keys added after runs were trained: in the fingerprint only when set away from their
# default (which keeps the behaviour from before the key), so runs trained before them keep
# their checkpoints and are not retrained.
# compile: compiled kernels round differently from eager ones, so the weights differ.
# cuda_graph: padded batches (and the captured kernels) sum in another order: the same.
TRAIN_KEYS_IF_SET = (
    "grad_clip",
    "warmup_steps",
    "schedule",
    "decay_norms_biases",
    "compile",
    "cuda_graph",
)
# Defaults of train keys that isoflow.settings.TRAIN_DEFAULTS does not hold (its code is
# part of the embedding store's digest): absent from a run's fingerprint at these values.
LATER_TRAIN_DEFAULTS = {"cuda_graph": False}


# what a checkpoint folder holds before its first epoch: nothing to keep for other settings
NOT_TRAINED = (FINGERPRINT_FILE, ATTEMPTS_LOG)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder Lightning writes the run's checkpoints to."""
    return Path(run_dir) / CHECKPOINT_DIR


def run_fingerprint(
    config: dict,
    experiment: dict,
    dataset_path,
    cache_dirs: dict[str, str | os.PathLike] | None = None,
    genome_fasta: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """What a checkpoint was trained from: every setting that shapes training with its
    default filled in (so a changed default counts as a change), less the sections of the
    modalities the run does not read (``settings.scoped_settings``), the specs of the encoders
    the experiment uses, the dataset by the sha256 of its content (a dataset rebuilt
    identically keeps its checkpoints; the digest a provenance record holds for the file's
    current size, mtime and ctime is reused rather than the file read again), each
    embedding cache the run reads by the size and modification time of its files (caches are
    large; a rebuilt cache counts as new), and what else the run reads that the dataset does
    not hold (``raw_inputs``): the genome when DNA is read raw (the dataset holds the
    windows' coordinates, not their letters) and the download record of each pretrained
    encoder read raw."""
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    train = {
        key: value
        for key, value in train_config(config).items()
        if key not in NOT_IN_FINGERPRINT
        and not (
            key in TRAIN_KEYS_IF_SET and value == {**TRAIN_DEFAULTS, **LATER_TRAIN_DEFAULTS}[key]
        )
    }
    dataset_sha256 = provenance.cached_digest(dataset_path)
    caches = {
        modality: {
            f.name: [f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(Path(folder).iterdir())
            if f.is_file() and f.name not in NOT_CACHE_FILES
        }
        for modality, folder in sorted((cache_dirs or {}).items())
    }
    settings = {
        "version": 3,  # 3: aggregators standardise features (checkpoints of 2 cannot load)
        "model": model_config(config),
        "train": train,
        "encoders": {
            name: spec_from_config(config, name)
            for name in sorted(set(encoder_names(config, experiment).values()))
        },
        "rna": rna_config(config),
        "protein": protein_config(config),
        "experiment": experiment,
        "dataset": {"sha256": dataset_sha256},
        "caches": caches,
        **raw_inputs(config, experiment, dataset_path, genome_fasta),
    }
    settings = scoped_settings(settings, experiment["modalities"])
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def raw_inputs(
    config: dict, experiment: dict, dataset_path, genome_fasta: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The fingerprint's part for inputs a run reads raw, beside the dataset: ``genome``
    (the sha256 of the FASTA's content, through the digest cache: hashed once per version of
    the file) when DNA is read raw: ``genome_fasta``, else the path the dataset records (as
    the loader takes it); ``weights`` (per pretrained encoder read raw, the sha256 of its
    download record ``isoflow_source.json`` less ``downloaded_at``: the resolved commit, or
    each fair-esm file's sha256, and the file list) — a re-download of other weights changes
    it, one of the same commit does not. Both absent otherwise: a run reading everything
    from caches keeps the fingerprint it had."""
    from isoflow.weights import SOURCE_FILE
    from isoflow.workflow import weights_dir

    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    cached = set(cached_modalities(config, experiment))
    found: dict[str, Any] = {}
    if "dna" in experiment["modalities"] and "dna" not in cached:
        fasta = genome_fasta or dataset_genome(dataset_path)
        if not fasta:
            raise InputError(dataset_path, None, "DNA is read raw but no genome FASTA is given")
        found["genome"] = {"sha256": provenance.cached_digest(fasta)}
    weights = {}
    for modality, name in sorted(encoder_names(config, experiment).items()):
        spec = with_encoder_defaults(spec_from_config(config, name))
        if modality in cached or spec["source"] != "pretrained":
            continue
        record_path = Path(weights_dir(name, spec)) / SOURCE_FILE
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError) as error:
            raise InputError(
                record_path,
                None,
                f"no readable download record ({error}); run rule download_encoders",
            ) from None
        if isinstance(record, dict):
            record.pop("downloaded_at", None)
        text = json.dumps(record, sort_keys=True)
        weights[name] = {"record_sha256": hashlib.sha256(text.encode()).hexdigest()}
    if weights:
        found["weights"] = weights
    return found


def dataset_genome(dataset_path) -> str | None:
    """The genome FASTA the dataset's windows refer to (its ``isoflow.genome`` metadata)."""
    import pyarrow.parquet as pq

    from isoflow.dataset import GENOME_METADATA_KEY

    metadata = pq.read_schema(dataset_path).metadata or {}
    return metadata.get(GENOME_METADATA_KEY, b"").decode() or None


def fingerprint_hash(fingerprint: dict[str, Any] | None) -> str:
    """12 hex digits naming a fingerprint (the folder under ``previous/``)."""
    if fingerprint is None:
        return "unrecorded"  # checkpoints from before fingerprints were written
    text = json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_fingerprint(ckpt_dir: Path) -> dict[str, Any] | None:
    """The recorded fingerprint; None when there is none or it is not JSON (then the
    checkpoints count as trained for other settings and are kept aside, not trusted)."""
    record = ckpt_dir / FINGERPRINT_FILE
    try:
        fingerprint = json.loads(record.read_text()) if record.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is not JSON: its checkpoints count as unrecorded", record)
        return None
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("train"), dict):
        # keys left out since the record was written (eval_batch_size) still match
        for key in NOT_IN_FINGERPRINT:
            fingerprint["train"].pop(key, None)
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("experiment"), dict):
        # sections of modalities the run does not read, recorded before they were left out
        fingerprint = scoped_settings(fingerprint, fingerprint["experiment"].get("modalities", []))
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("caches"), dict):
        for files in fingerprint["caches"].values():
            for name in NOT_CACHE_FILES:
                if isinstance(files, dict):
                    files.pop(name, None)
    return fingerprint


def prepare_checkpoints(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Make ``checkpoints/`` hold the checkpoints of exactly this fingerprint, deleting none.

    Checkpoints written for other settings or data are moved, with the run's SLURM
    ``hpc_ckpt_*.ckpt``, to ``previous/<fingerprint_hash>/``; checkpoints kept there for this
    fingerprint (trained before with the same settings) are moved back, to resume from.
    """
    run_dir = Path(run_dir)
    ckpt_dir = checkpoint_dir(run_dir)
    previous = run_dir / PREVIOUS_DIR
    if ckpt_dir.exists():
        recorded = _read_fingerprint(ckpt_dir)
        if recorded == fingerprint:
            return
        hpc = list(run_dir.glob(HPC_CHECKPOINTS))
        if hpc or any(p.name not in NOT_TRAINED for p in ckpt_dir.iterdir()):
            name = fingerprint_hash(recorded)
            dest, n = previous / name, 1
            while dest.exists():
                dest, n = previous / f"{name}-{n}", n + 1
            for path in hpc:
                path.rename(ckpt_dir / path.name)
            previous.mkdir(parents=True, exist_ok=True)
            ckpt_dir.rename(dest)
            log.warning("%s was trained with other settings or data: kept in %s", ckpt_dir, dest)
        else:  # only a fingerprint: nothing was trained (a run stopped before its first epoch)
            for name in NOT_TRAINED:
                (ckpt_dir / name).unlink(missing_ok=True)
            ckpt_dir.rmdir()
    kept = _kept_folder(previous, fingerprint)
    if kept is not None:
        kept.rename(ckpt_dir)
        for path in ckpt_dir.glob(HPC_CHECKPOINTS):
            path.rename(run_dir / path.name)
        log.info("%s: checkpoints of these settings restored from %s", ckpt_dir, kept)
        return
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt_dir / FINGERPRINT_FILE) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=2) + "\n")


def _kept_folder(previous: Path, fingerprint: dict[str, Any]) -> Path | None:
    """The folder under ``previous/`` holding checkpoints of ``fingerprint``: the one named
    by its hash, else any whose record reads as equal now (set aside under an older reading
    of the record, e.g. before the sections of unread modalities were left out); never
    ``unfit/``."""
    named = previous / fingerprint_hash(fingerprint)
    candidates = [named] + sorted(
        p for p in (previous.iterdir() if previous.is_dir() else []) if p != named
    )
    return next(
        (
            f
            for f in candidates
            if f.is_dir() and f.name != UNFIT_DIR and _read_fingerprint(f) == fingerprint
        ),
        None,
    )


def resume_checkpoint(run_dir: Path, set_aside: bool = True, crc: bool = True) -> Path | None:
    """The checkpoint a run resumes from: the newest complete one of ``checkpoints/last.ckpt``
    and SLURM auto-requeue ``hpc_ckpt_*.ckpt``, else the complete ``best-epochNNN.ckpt`` of
    the highest epoch (written in the same epoch's end as that epoch's ``last.ckpt``, with the
    whole training state: the run goes on from that epoch), else None (a fresh start).

    A candidate that is not a complete checkpoint (``unreadable``: a file cut short by a kill
    while an earlier version copied it into place) is passed over and, with ``set_aside``
    (the run's rank 0; other ranks only pass it over), moved to ``previous/unfit/`` with a
    warning naming it, never deleted: every rerun resumed from it and died. ``crc=False``:
    only each candidate's central directory is read (``unreadable``), not its body: to name
    the checkpoint a requeued attempt will resume from, where the attempt itself checks it
    whole."""
    run_dir = Path(run_dir)
    ckpt_dir = checkpoint_dir(run_dir)
    latest = [ckpt_dir / "last.ckpt", *run_dir.glob(HPC_CHECKPOINTS)]
    latest = sorted(
        (p for p in latest if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    best = sorted(ckpt_dir.glob("best-epoch*.ckpt"), key=_epoch_of, reverse=True)
    for candidate in [*latest, *best]:
        why = unreadable(candidate, crc=crc)
        if why is None:
            return candidate
        if set_aside:
            kept = set_aside_file(run_dir, candidate)
            log.warning(
                "%s is not a complete checkpoint (%s): not resumed from, kept as %s",
                candidate,
                why,
                kept,
            )
        else:
            log.warning("%s is not a complete checkpoint (%s): not resumed from", candidate, why)
    return None


RESUME_DECISION = ".resume-{key}.json"


def launch_key() -> str | None:
    """What names one launch of a SLURM job step whose tasks all start the training at once
    (``srun`` with one task per GPU: ``SLURM_NTASKS`` > 1): job, step and restart count.
    None outside such a step (one process, or Lightning's own launcher, whose other ranks
    start inside ``fit``, after rank 0's bookkeeping)."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) < 2 or "SLURM_PROCID" not in os.environ:
        return None
    job = os.environ.get("SLURM_JOB_ID", "nojob")
    step = os.environ.get("SLURM_STEP_ID", "nostep")
    return f"{job}.{step}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"


def agreed_resume(
    run_dir: str | os.PathLike,
    decide,
    rank: int,
    key: str | None,
    timeout_s: float = 900.0,
    poll_s: float = 0.25,
) -> Path | None:
    """The checkpoint every rank of the run resumes from, decided once by rank 0.

    ``decide()`` is rank 0's bookkeeping (``prepare_checkpoints`` and ``resume_checkpoint``
    with set-aside); it moves files. With ``key`` None (one process, or ranks started after
    rank 0's bookkeeping) a rank other than 0 looks for itself, moving nothing. With a
    ``key`` (``launch_key``: tasks of one ``srun`` step start together, before any process
    group exists), rank 0 writes its answer to ``RESUME_DECISION`` in the run folder and the
    other ranks wait for that file instead of reading checkpoints rank 0 may be moving: they
    resumed from different epochs, or from a file being set aside, and the ranks' states
    disagreed. A rank that waits ``timeout_s`` without an answer stops with an error naming
    the file."""
    run_dir = Path(run_dir)
    if key is None:
        return decide() if rank == 0 else resume_checkpoint(run_dir, set_aside=False)
    decision = run_dir / RESUME_DECISION.format(key=key)
    if rank == 0:
        for stale in run_dir.glob(RESUME_DECISION.format(key="*")):
            if stale != decision:
                stale.unlink(missing_ok=True)
        resume = decide()
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(decision, fsync=True) as tmp:
            tmp.write_text(json.dumps({"resume": None if resume is None else str(resume)}))
        return resume
    waited = 0.0
    while not decision.is_file():
        if waited >= timeout_s:
            raise InputError(
                decision,
                None,
                f"rank {rank} waited {timeout_s:.0f} s for rank 0's resume decision and got "
                "none: did rank 0 of this job step fail? (its log says why)",
            )
        time.sleep(poll_s)
        waited += poll_s
    resume = json.loads(decision.read_text())["resume"]
    return None if resume is None else Path(resume)


def saved_epoch(path: str | os.PathLike) -> int | None:
    """The epoch at whose end Lightning wrote checkpoint ``path`` (its ``epoch``; a run
    resumed from it trains the next one), its tensors left unread (``mmap``); None when it
    holds no such number."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    epoch = saved.get("epoch") if isinstance(saved, dict) else None
    return epoch if isinstance(epoch, int) else None


def _epoch_of(path: Path) -> int:
    """NNN of ``best-epochNNN.ckpt`` (-1 for another name)."""
    digits = path.stem.removeprefix("best-epoch")
    return int(digits) if digits.isdigit() else -1


def unreadable(path: Path, crc: bool = True) -> str | None:
    """Why ``path`` is not a complete checkpoint (``torch.save``'s zip archive), or None.

    Reads the archive's central directory (at the end of the file: a file cut short has
    none), requires the pickle (``data.pkl``) and checks every member against the CRC-32
    ``torch.save`` wrote for it, so bytes that never reached the disk (a zero-filled stretch
    after a crash of the machine) are caught too, not resumed as weights. Reads the file
    once, about 0.3 s per GB from the page cache (docs/benchmarks.md, "fsync"), once per
    resume. ``crc=False``: the central directory and the pickle's entry only (a file cut
    short still fails), the body unread: milliseconds at any size, for a requeue's last
    line, read while the job's time runs out (docs/benchmarks.md, "Requeue endings")."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if not members:
                return "an empty archive"
            if not any(m.filename.rsplit("/", 1)[-1] == "data.pkl" for m in members):
                return "no data.pkl in the archive"
            bad = archive.testzip() if crc else None
            if bad is not None:
                return f"{bad}: CRC-32 differs (its bytes are not those written)"
    except Exception as error:  # noqa: BLE001 -- a damaged byte can raise nearly anything
        # (UnicodeDecodeError on a name, NotImplementedError on a "zip version", ValueError
        # on an offset: found by flipping single bytes); each means the file cannot be trusted
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return None


def set_aside_file(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move one checkpoint of the run to ``previous/unfit/`` (never restored, never deleted),
    under its own name or, when that is taken, ``{stem}-N{suffix}``; returns where it went."""
    path = Path(path)
    aside = Path(run_dir) / PREVIOUS_DIR / UNFIT_DIR
    aside.mkdir(parents=True, exist_ok=True)
    dest, n = aside / path.name, 1
    while dest.exists():
        dest, n = aside / f"{path.stem}-{n}{path.suffix}", n + 1
    path.rename(dest)
    return dest


def set_aside_command(run_dir: str | os.PathLike) -> str:
    """The shell command that moves the run's checkpoints to ``previous/unfit/`` (kept, not
    deleted), so the run trains afresh; the run's ``hpc_ckpt_*.ckpt`` are to go with them."""
    run_dir = Path(run_dir)
    aside = shlex.quote(str(run_dir / PREVIOUS_DIR / UNFIT_DIR))
    return f"mkdir -p {aside} && mv {shlex.quote(str(checkpoint_dir(run_dir)))} {aside}/"


def record_tested(checkpoint: str | os.PathLike) -> dict[str, str]:
    """Write ``tested.json`` beside ``checkpoint``: its file name and sha256, the checkpoint
    the run scores its test split with (``isoflow.train``, before ``metrics.json``). The
    export takes exactly that one (``best_checkpoint``)."""
    checkpoint = Path(checkpoint)
    record = {"file": checkpoint.name, "sha256": provenance.cached_digest(checkpoint)}
    with atomic_path(checkpoint.parent / TESTED_FILE, fsync=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return record


def best_checkpoint(run_dir: str | os.PathLike, fingerprint: dict[str, Any]) -> Path:
    """The checkpoint a run with ``fingerprint`` scored its test split with, in the folder
    holding this fingerprint's checkpoints — ``checkpoints/``, or
    ``previous/<fingerprint_hash>/`` when a later settings change moved them there: the one
    its ``tested.json`` names, with the sha256 recorded there (else an error saying to
    test again). Runs tested before that record was written: their one
    ``best-epochNNN.ckpt`` (or, with none, ``last.ckpt``, as ``isoflow.train`` falls back);
    several are an error, not a guess: a kill after a new best was written but before
    ``last.ckpt`` left one that the resumed run, on a GPU not bit-identical, may not have
    tested (the newest by mtime was taken, and the export's check failed on every rerun).

    The checkpoint is not a declared output of rule ``train`` (a failed job would delete
    it, and resuming needs it), so a reader finds it by what it was trained from, not by a
    path: checkpoints of other settings are never taken for this run's."""
    run_dir = Path(run_dir)
    current = checkpoint_dir(run_dir)
    if current.is_dir() and _read_fingerprint(current) == fingerprint:
        folder: Path | None = current
    else:
        folder = _kept_folder(run_dir / PREVIOUS_DIR, fingerprint)
    if folder is None:
        raise InputError(
            checkpoint_dir(run_dir),
            None,
            "no checkpoints trained with these settings and data (neither here nor in "
            f"{PREVIOUS_DIR}/{fingerprint_hash(fingerprint)}/): run rule train for this run again",
        )
    again = (
        "run rule train for this run again (`snakemake --forcerun "
        f"{Path(run_dir) / 'metrics.json'}`: a finished run resumes, trains no further, tests "
        "again and records which checkpoint it tested)"
    )
    record_path = folder / TESTED_FILE
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            name, digest = str(record["file"]), str(record["sha256"])
        except (ValueError, KeyError, TypeError):
            raise InputError(record_path, None, f"not a record of a checkpoint; {again}") from None
        tested = folder / name
        if Path(name).name != name or not tested.is_file():
            raise InputError(
                tested, None, f"the checkpoint the run was tested with is not here; {again}"
            )
        if provenance.cached_digest(tested) != digest:
            raise InputError(
                tested,
                None,
                f"changed since the run was tested with it (sha256 differs from {TESTED_FILE}); "
                f"{again}",
            )
        return tested
    best = sorted(folder.glob("best-epoch*.ckpt"))
    if len(best) > 1:
        raise InputError(
            folder,
            None,
            f"{len(best)} best-epoch*.ckpt ({', '.join(p.name for p in best)}) and no "
            f"{TESTED_FILE} saying which the run was tested with; {again}",
        )
    found = best or [p for p in [folder / "last.ckpt"] if p.is_file()]
    if not found:
        raise InputError(folder, None, "no best-epoch*.ckpt or last.ckpt in the checkpoints")
    return found[0]
