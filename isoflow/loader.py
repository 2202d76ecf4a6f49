"""Torch Dataset and Lightning DataModule over ``results/dataset/{name}.parquet``.

Two input modes per modality:

- raw: DNA tokens are read from the genome FASTA window (``window_start``/``window_end``,
  reverse-complemented on ``-``), the RNA string is cut to ``rna_max_nt`` (keeping the 5'
  or the 3' end), the protein to ``protein_max_aa`` residues (N-terminal part kept):
  what the run's encoders read of them (:func:`raw_cuts`), so a raw run reads what the
  cache read; the model's encoders tokenize them.
- cache: the modality's embeddings come from an :class:`isoflow.embed.EmbeddingCache`
  built by the ``embed`` rule over the same dataset (the cache records which sequence each
  transcript has; nothing is read from the genome). Each split resolves its transcripts'
  cache rows once; a batch is then gathered whole (``IsoformDataset.__getitems__``, which
  the DataLoader calls with the batch's indices): one ``index_select`` per modality (and shard)
  from the memory maps, float16 as stored, into page-locked memory when a GPU is there;
  the model casts to float32 on its device, which is exact, so results are those of a
  float32 copy made here.

Training-set controls, both deterministic: ``fraction`` keeps the training transcripts
whose ID hashes below the fraction (so a smaller fraction is a subset of a larger one,
whatever the seed), and ``shuffle_targets`` permutes the target rows among the kept
training transcripts with ``seed``, and among the validation transcripts too: early stopping
and the best-checkpoint choice then never see a real target, so the control's test score is
a true floor (selecting its epoch on real validation targets leaked signal into it). Test
targets are never touched.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from isoflow.alphabet import id_fraction, truncate
from isoflow.dataset import _check_finite, read_dataset
from isoflow.errors import InputError
from isoflow.experiments import DEFAULT_POOLING, MODALITIES, run_pooling
from isoflow.splits import SPLITS


def json_text(value: Any) -> str:
    """``value`` as one line of JSON, for a message."""
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _normal(value: Any) -> Any:
    """``value`` as JSON reads it back, keys sorted (what fingerprints compare)."""
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))


def effective_spec(name: str, spec: dict | None, config: dict | None = None) -> dict:
    """The encoder spec that ran: ``spec`` over ``settings.ENCODER_DEFAULTS`` with the
    sequence limits of ``config`` (``rna.max_nt``/``truncate``, ``protein.max_aa``; none:
    their defaults, which are the families' own) filled in where it sets none, as JSON
    (``model.encoders.spec_from_config``, what embed jobs record and fingerprints hold)."""
    from isoflow.model.encoders import spec_from_config

    config = {**(config or {}), "encoders": {name: dict(spec or {})}}
    return _normal(spec_from_config(config, name))


def cache_expectations(config: dict, experiment: dict) -> dict[str, dict[str, Any]]:
    """What each modality's embedding cache must be for a run of ``experiment`` under
    ``config`` (:meth:`IsoformDataModule._check_cache`): modality -> ``encoder`` (its name),
    ``spec`` (:func:`effective_spec` of the config's), ``pooling`` (the run's,
    :func:`isoflow.experiments.run_pooling`: an expanded experiment holds ``pooling`` only when
    it is not adaptive, as its name and checkpoint fingerprint read it) and, for a positional
    run of a config with an ``embed`` section, ``positional`` (``workflow.embed_pooling``: the crop
    and strides; a train rule's settings hold no ``embed`` section, and the experiment
    then only says positional)."""
    from isoflow.settings import encoder_names

    pooling = run_pooling(experiment)
    positional = None
    if pooling != DEFAULT_POOLING and "embed" in config:
        from isoflow.workflow import embed_pooling

        positional = _normal(embed_pooling(config))
    return {
        modality: {
            "encoder": name,
            "spec": effective_spec(name, (config.get("encoders") or {}).get(name), config),
            "pooling": pooling,
            "positional": positional,
        }
        for modality, name in encoder_names(config, experiment).items()
    }


def raw_cuts(config: dict, experiment: dict) -> dict[str, Any]:
    """The ``rna_max_nt``, ``rna_truncate`` and ``protein_max_aa`` of an
    :class:`IsoformDataModule` for a run of ``experiment`` under ``config``: what the run's
    RNA and protein encoders cut a longer sequence to (``model.encoders.raw_cut`` of the
    effective spec, which a spec's own ``max_len`` / ``truncate`` set over ``rna.max_nt`` /
    ``protein.max_aa``), so a raw run reads the letters the embedding cache read; the
    config's limits for a modality the run does not read."""
    from isoflow.model.encoders import raw_cut
    from isoflow.settings import encoder_names, protein_config, rna_config

    rna, protein = rna_config(config), protein_config(config)
    cuts = {"rna": (rna["max_nt"], rna["truncate"]), "protein": (protein["max_aa"], "")}
    for modality, name in encoder_names(config, experiment).items():
        if modality in cuts:
            cuts[modality] = raw_cut(config, name)
    return {
        "rna_max_nt": cuts["rna"][0],
        "rna_truncate": cuts["rna"][1],
        "protein_max_aa": cuts["protein"][0],
    }


def select_training_rows(
    df: pd.DataFrame, tissues: list[str], fraction: float, shuffle_targets: bool, seed: int
) -> pd.DataFrame:
    """The training rows after the ``fraction`` subset and the optional target shuffle."""
    train = df[df["split"] == "train"]
    if fraction < 1.0:
        train = train[id_fraction(train["transcript_id"]) < fraction]
    train = train.reset_index(drop=True)
    if shuffle_targets:
        train = shuffle_rows(train, tissues, seed)
    return train


def shuffle_rows(frame: pd.DataFrame, tissues: list[str], seed: int) -> pd.DataFrame:
    """A copy of ``frame`` whose target rows (all tissues together) are permuted."""
    frame = frame.copy()
    order = np.random.default_rng(seed).permutation(len(frame))
    frame[tissues] = frame[tissues].to_numpy()[order]
    return frame


def valid_rows(df: pd.DataFrame, tissues: list[str], shuffle_targets: bool, seed: int):
    """The validation rows; permuted targets for the shuffled control (another stream)."""
    valid = df[df["split"] == "valid"].reset_index(drop=True)
    return shuffle_rows(valid, tissues, seed + 1) if shuffle_targets else valid


class IsoformDataset(Dataset):
    """One item per transcript: targets plus what each modality needs.

    ``caches`` (modality -> :class:`isoflow.embed.EmbeddingCache`) serve the ``cached``
    modalities in :meth:`__getitems__`; without one, an item carries its transcript ID and
    :class:`Collate` looks it up.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        tissues: list[str],
        modalities: Sequence[str],
        genome=None,
        rna_max_nt: int | None = None,
        rna_truncate: str = "keep_5prime",
        protein_max_aa: int | None = None,
        cached: Sequence[str] = (),
        caches: dict[str, Any] | None = None,
        pin_memory: bool = False,
    ):
        self.df = df.reset_index(drop=True)
        self.cached = set(cached)
        self.targets = self.df[tissues].to_numpy(dtype=np.float32)
        self.modalities = list(modalities)
        self.genome = genome
        self.rna_max_nt = rna_max_nt
        self.rna_truncate = rna_truncate
        self.protein_max_aa = protein_max_aa
        self.pin_memory = pin_memory
        # column arrays: a row read through df.iloc costs ~50 us, an array element ~0.1 us
        self.columns = {
            name: self.df[name].to_numpy()
            for name in (
                "transcript_id",
                "chrom",
                "window_start",
                "window_end",
                "strand",
                "rna_seq",
                "protein_seq",
            )
            if name in self.df
        }
        ids = self.columns["transcript_id"]
        self._distinct: tuple[np.ndarray, np.ndarray] | None = None
        self.cache_rows = {
            modality: cache.item_rows(ids)
            for modality, cache in (caches or {}).items()
            if modality in self.cached
        }

    def __len__(self) -> int:
        return len(self.df)

    def distinct_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(first, inverse)``: the first row of each distinct model input, in dataset
        order, and for every row the position in ``first`` of its input. Rows share an input
        when every modality the model reads is the same: a cached modality's stored rows
        (shard, offset, length: the cache holds one per distinct sequence, so rows of equal
        sequences are the same rows), a raw one's sequence as the encoder reads it
        (``isoflow.embed.sequence_key`` of the DNA window's letters, of the cut RNA or
        protein; no protein is one input of its own). A cached modality whose rows are not
        resolved here (no cache given) keeps each transcript apart. Worked out once.

        ``isoflow.train.predict`` predicts each distinct input once and copies its row to
        every transcript sharing it: the same input then gives the same bits, whatever the
        batch it would have landed in (a float sum's order depends on a batch's size, a
        row's position and its padding)."""
        if self._distinct is None:
            from isoflow.embed import sequence_key

            codes = []
            for modality in self.modalities:
                if modality in self.cache_rows:
                    rows = self.cache_rows[modality]
                    codes += [rows.shard, rows.offset, rows.length]
                elif modality in self.cached:
                    codes.append(np.arange(len(self)))
                else:
                    keys = []
                    for i in range(len(self)):
                        seq = self.sequence(i, modality)
                        keys.append("" if seq is None else sequence_key(seq))
                    codes.append(pd.factorize(np.asarray(keys, dtype=object))[0])
            table = np.stack(codes, axis=1).astype(np.int64)
            _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
            order = np.argsort(first)  # np.unique sorts by value: back to dataset order
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            self._distinct = first[order], position[inverse.reshape(-1)]
        return self._distinct

    def sequence(self, i: int, modality: str) -> Any:
        """Raw input of one modality: DNA uint8 tokens, RNA str, protein str or None."""
        column = self.columns
        if modality == "dna":
            return self.genome.tokens(
                column["chrom"][i],
                int(column["window_start"][i]),
                int(column["window_end"][i]),
                column["strand"][i],
            )
        if modality == "rna":
            return truncate(column["rna_seq"][i], self.rna_max_nt, self.rna_truncate)
        protein = column["protein_seq"][i]
        if protein is None or (isinstance(protein, float) and np.isnan(protein)):
            return None
        return truncate(protein, self.protein_max_aa)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"index": i, "target": self.targets[i]}
        for modality in self.modalities:
            if modality in self.cached:
                item[modality] = self.columns["transcript_id"][i]
            else:
                item[modality] = self.sequence(i, modality)
        return item

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """The batch of ``indices`` at once, as :class:`Collate` would build it from the
        items: targets and cached embeddings are gathered by index arrays, not per item."""
        rows = np.asarray(indices, dtype=np.int64)
        # pinned only in the main process: a worker's pages would be copied to the main one
        pin = self.pin_memory and torch.utils.data.get_worker_info() is None
        target = torch.from_numpy(self.targets[rows])
        batch: dict[str, Any] = {
            "index": torch.from_numpy(rows),
            "target": target.pin_memory() if pin else target,
        }
        inputs: dict[str, Any] = {}
        for modality in self.modalities:
            if modality in self.cache_rows:
                inputs[modality] = self.cache_rows[modality].take(rows, pin_memory=pin)
            elif modality in self.cached:
                inputs[modality] = [self.columns["transcript_id"][i] for i in rows]
            elif modality == "dna":
                inputs[modality] = np.stack([self.sequence(i, modality) for i in rows])
            else:
                inputs[modality] = [self.sequence(i, modality) for i in rows]
        batch["inputs"] = inputs
        return batch


class Collate:
    """Batch items: targets stacked; DNA windows stacked; strings listed; cached modalities
    (items carry the transcript ID) replaced by their ``(emb, mask)`` from the cache.

    A batch :meth:`IsoformDataset.__getitems__` built already passes through (with any
    cached modality it left as transcript IDs looked up here)."""

    def __init__(self, modalities: Sequence[str], caches: dict[str, Any] | None = None):
        self.modalities = list(modalities)
        self.caches = caches or {}

    def __call__(self, items: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        if isinstance(items, dict):
            inputs = items["inputs"]
            for modality, cache in self.caches.items():
                if isinstance(inputs.get(modality), list):
                    inputs[modality] = tuple(cache.lookup_items(inputs[modality]))
            return items
        batch: dict[str, Any] = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "target": torch.from_numpy(np.stack([it["target"] for it in items])),
        }
        inputs: dict[str, Any] = {}
        for modality in self.modalities:
            values = [it[modality] for it in items]
            if modality in self.caches:
                inputs[modality] = tuple(self.caches[modality].lookup_items(values))
            elif modality == "dna":
                inputs[modality] = np.stack(values)
            else:
                inputs[modality] = values
        batch["inputs"] = inputs
        return batch


class _Prefetcher:
    """Iterates ``iterator`` in a background thread, at most ``depth`` batches ahead, in
    order; an error raised while making a batch is raised where that batch would have been
    returned. ``close`` (or dropping the iterator) stops the thread."""

    def __init__(self, iterator: Iterator, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=self._fill, args=(iterator,), name="isoflow-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, iterator: Iterator) -> None:
        try:
            for batch in iterator:
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as error:  # handed to the consumer
            self._put(("error", error))

    def __iter__(self) -> _Prefetcher:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "batch":
            return value
        self._done = True
        self._thread.join()
        if kind == "end":
            raise StopIteration
        raise value

    def close(self) -> None:
        self._stop.set()
        self._done = True
        self._thread.join()

    def __del__(self) -> None:
        self._stop.set()


class PrefetchDataLoader(DataLoader):
    """A ``DataLoader`` whose batches (num_workers 0: gathered from the cache's memory maps
    and pinned in this process) are made ``prefetch_batches`` ahead in a background thread,
    so the next batch's gather overlaps the step that waits on the GPU
    (``train.prefetch_batches``; docs/model.md). The same batches in the same order."""

    def __init__(self, *args: Any, prefetch_batches: int = 2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prefetch_batches = prefetch_batches

    def __iter__(self):
        iterator = super().__iter__()
        if self.prefetch_batches <= 0 or self.num_workers > 0:
            return iterator
        return _Prefetcher(iterator, self.prefetch_batches)


class EpochSeededSampler(DistributedSampler):
    """A random order that depends only on (seed, epoch): a resumed run sees the same
    batches as an uninterrupted one. Lightning calls ``set_epoch`` each epoch.

    Under DDP (``num_replicas`` > 1) rank ``r`` takes every ``num_replicas``-th transcript of
    that order from position ``r`` on; the order is padded at its end with its first
    transcripts so that every rank runs as many steps (DistributedSampler's layout, and a
    DistributedSampler, so Lightning keeps it in place of wrapping it). The repeats are thus a
    rank's last ``len(self) - self.counted`` positions of the epoch: the training step leaves
    them out of the loss, the logged ``train_loss`` and the standardisers' statistics
    (``lightning.IsoFormerModule.counted_rows``), so each transcript counts once per epoch."""

    def __init__(self, n: int, seed: int, num_replicas: int = 1, rank: int = 0):
        # DistributedSampler's attributes set here: its __init__ wants a dataset and, without
        # num_replicas and rank, a process group
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = True
        self.drop_last = False
        self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.counted = len(range(rank, n, num_replicas))  # positions past these: repeats

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        if self.num_replicas == 1:
            return iter(order)
        padding = self.total_size - self.n
        order += (order * math.ceil(padding / max(self.n, 1)))[:padding]
        return iter(order[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def on_device(value: Any, device: torch.device) -> bool:
    """True when every tensor in ``value`` (nested dicts, lists and tuples; strings,
    numbers, None and NumPy arrays are left where they are) is on ``device``; False also for
    any other object, which Lightning's ``transfer_batch_to_device`` may know how to move."""
    if isinstance(value, torch.Tensor):
        return value.device == device
    if isinstance(value, dict):
        return all(on_device(v, device) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(on_device(v, device) for v in value)
    return value is None or isinstance(value, (str, bytes, int, float, np.ndarray))


class IsoformDataModule(pl.LightningDataModule):
    """Train/valid/test loaders over a dataset parquet for one experiment."""

    def __init__(
        self,
        dataset_path: str | os.PathLike,
        modalities: Sequence[str],
        genome_fasta: str | os.PathLike | None = None,
        cache_dirs: dict[str, str | os.PathLike] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        fraction: float = 1.0,
        shuffle_targets: bool = False,
        seed: int = 0,
        rna_max_nt: int | None = None,
        rna_truncate: str = "keep_5prime",
        protein_max_aa: int | None = None,
        pin_memory: bool | None = None,
        prefetch_batches: int = 0,
        cache_expect: dict[str, dict[str, Any]] | None = None,
    ):
        """``pin_memory``: gather cached batches into page-locked memory, for asynchronous
        copies to a GPU (default: when CUDA is available). ``prefetch_batches`` > 0 (with
        ``num_workers`` 0): make that many batches ahead in a background thread
        (:class:`PrefetchDataLoader`). ``cache_expect``: what each cache must have been
        built with (:func:`cache_expectations`; ``run_experiment`` passes it), checked in
        :meth:`setup` with the rest (:meth:`_check_cache`)."""
        super().__init__()
        unknown = set(modalities) - set(MODALITIES)
        if not modalities or unknown:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}")
        self.dataset_path = dataset_path
        self.modalities = [m for m in MODALITIES if m in modalities]
        self.genome_fasta = genome_fasta
        self.cache_dirs = dict(cache_dirs or {})
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.fraction = fraction
        self.shuffle_targets = shuffle_targets
        self.seed = seed
        self.rna_max_nt = rna_max_nt
        self.rna_truncate = rna_truncate
        self.protein_max_aa = protein_max_aa
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_batches = int(prefetch_batches)
        self.cache_expect = dict(cache_expect or {})
        self.tissues: list[str] = []
        self.frames: dict[str, pd.DataFrame] = {}
        self.datasets: dict[str, IsoformDataset] = {}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int):
        """The batch itself when every tensor in it is on ``device`` already (a CPU run):
        Lightning's generic walk over the nested batch costs more than a tiny model's step
        (issue 14). Otherwise Lightning's move. Here, not in the LightningModule: Lightning
        warns at every run when a module overrides it and a datamodule is passed."""
        if on_device(batch, device):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        df, tissues = read_dataset(self.dataset_path)
        self.tissues = tissues
        bad = ~df["split"].isin(SPLITS)
        if bad.any():
            row = df[bad].iloc[0]
            raise InputError(
                self.dataset_path, row["transcript_id"], f"split {row['split']!r} not in {SPLITS}"
            )
        # every split's targets before any training: a non-finite valid or test target was
        # found only after the run had trained, and named the run folder, not the dataset
        _check_finite(df, tissues, self.dataset_path)
        genome = None
        if "dna" in self.modalities and "dna" not in self.cache_dirs:
            fasta = self.genome_fasta or df.attrs.get("genome")
            if not fasta:
                raise InputError(self.dataset_path, None, "DNA modality needs a genome FASTA")
            from isoflow.genome import GenomeWindows

            genome = GenomeWindows(fasta)
        self.frames = {
            "train": select_training_rows(
                df, tissues, self.fraction, self.shuffle_targets, self.seed
            ),
            "valid": valid_rows(df, tissues, self.shuffle_targets, self.seed),
            "test": df[df["split"] == "test"].reset_index(drop=True),
        }
        for split, frame in self.frames.items():
            if frame.empty:
                raise InputError(self.dataset_path, None, f"no transcripts in the {split} split")
        caches = {}
        if self.cache_dirs:
            from isoflow.embed import EmbeddingCache

            caches = {m: EmbeddingCache(d) for m, d in self.cache_dirs.items()}
            for modality, cache in caches.items():
                self._check_cache(modality, cache, df)
        self.datasets = {
            split: IsoformDataset(
                frame,
                tissues,
                self.modalities,
                genome=genome,
                rna_max_nt=self.rna_max_nt,
                rna_truncate=self.rna_truncate,
                protein_max_aa=self.protein_max_aa,
                cached=self.cache_dirs,
                caches=caches,
                pin_memory=self.pin_memory,
            )
            for split, frame in self.frames.items()
        }
        self.collate = Collate(self.modalities, caches)

    def _check_cache(self, modality: str, cache, df: pd.DataFrame) -> None:
        """The cache given for ``modality`` must be one of that modality (and, with
        ``cache_expect``, of the run's encoder, spec and pooling), hold every transcript
        with a sequence of ``modality`` under a key its index has, and (RNA, protein) under
        the key of the dataset's current sequence: a silently masked or another sequence's
        embedding would train on wrong data. Each a one-line :class:`InputError` naming the
        cache folder."""
        from isoflow.embed import (
            META_FILE,
            SEQUENCE_COLUMNS,
            dataset_items,
            rebuild_hint,
            sequence_key,
        )

        if cache.modality != modality:
            raise InputError(
                cache.path,
                META_FILE,
                f"is a cache of {cache.modality} embeddings (encoder "
                f"{cache.meta.get('encoder')}), given for {modality}",
            )
        expect = self.cache_expect.get(modality)
        if expect is not None:
            self._check_cache_settings(modality, cache, expect)
        keys = cache.item_keys(df["transcript_id"])
        # RNA, protein: transcript -> the sequence rule embed reads (None: missing)
        items = dataset_items(df, modality) if modality in SEQUENCE_COLUMNS else None
        has_sequence = (
            np.array([items[t] is not None for t in df["transcript_id"]])
            if modality == "protein"
            else np.ones(len(df), bool)
        )
        absent = [
            t
            for t, k, h in zip(df["transcript_id"], keys, has_sequence, strict=True)
            if h and k is None
        ]
        if absent:
            raise InputError(
                cache.path,
                absent[0],
                f"{len(absent)} transcripts of the dataset are not in this {modality} "
                f"embedding cache; {rebuild_hint(cache.path, cache.meta)}",
            )
        unindexed = [
            t
            for t, k in zip(df["transcript_id"], keys, strict=True)
            if k is not None and k not in cache
        ]
        if unindexed:
            raise InputError(
                cache.path,
                unindexed[0],
                f"{len(unindexed)} transcripts have a key in items.parquet that index.parquet "
                "lacks (an incomplete or badly gathered cache); "
                + rebuild_hint(cache.path, cache.meta),
            )
        if items is None:  # DNA: the keys are of genome windows, not read here
            self._check_windows(cache, df)
            return
        changed = [
            t
            for t, k in zip(df["transcript_id"], keys, strict=True)
            if k != (None if items[t] is None else sequence_key(items[t]))
        ]
        if changed:
            raise InputError(
                cache.path,
                changed[0],
                f"{len(changed)} transcripts' {SEQUENCE_COLUMNS[modality]} in the dataset are "
                f"not the sequences this {modality} cache embedded (another dataset's cache); "
                f"{rebuild_hint(cache.path, cache.meta)}",
            )

    @staticmethod
    def _check_windows(cache, df: pd.DataFrame) -> None:
        """A DNA cache's ``windows_sha256`` (``embed.windows_digest``) against the dataset's
        windows, when the dataset holds exactly the cache's transcripts (the workflow's case;
        a subset cannot be compared with one digest). A cache built before it was recorded
        is accepted, with an info line: docs/rerun.md, "DNA caches and their windows"."""
        import logging

        from isoflow.embed import META_FILE, rebuild_hint, windows_digest

        recorded = cache.meta.get("windows_sha256")
        log = logging.getLogger("isoflow.loader")
        if recorded is None:
            log.info(
                "%s records no windows_sha256 (built before it was): windows not checked",
                cache.path,
            )
            return
        if int(cache.meta.get("n_items", -1)) != len(df):
            log.info(
                "%s: the dataset is not the cache's transcript set: windows not checked", cache.path
            )
            return
        if windows_digest(df) != recorded:
            raise InputError(
                cache.path / META_FILE,
                "windows_sha256",
                "the dataset's DNA windows (transcript, contig, start, end, strand) are not "
                "those this cache embedded (another dna.window, annotation or genome's contig "
                f"names); {rebuild_hint(cache.path, cache.meta)}",
            )

    @staticmethod
    def _check_cache_settings(modality: str, cache, expect: dict[str, Any]) -> None:
        """The cache's meta.json against what the run reads (:func:`cache_expectations`)."""
        from isoflow.embed import META_FILE

        meta = cache.meta
        path = cache.path / META_FILE
        fix = "rebuild it (rule embed) with this config, or give the cache built with it"
        built = meta.get("encoder")
        if built is None:
            raise InputError(path, "encoder", f"records no encoder (not a rule embed cache); {fix}")
        if built != expect["encoder"]:
            raise InputError(
                path,
                "encoder",
                f"{built} built this {modality} cache; the run reads {modality} with "
                f"{expect['encoder']}: give that encoder's cache",
            )
        pooling = meta.get("pooling")
        mode = pooling.get("mode") if isinstance(pooling, dict) else DEFAULT_POOLING
        if mode != expect["pooling"]:
            from isoflow.workflow import cache_dir

            raise InputError(
                path,
                "pooling",
                f"this cache is pooled {mode}, the run reads {expect['pooling']} caches "
                f"({cache_dir(expect['encoder'], expect['pooling'])})",
            )
        # both sides as far as the cache's content depends on them (workflow.cache_spec):
        # finetune_last, gradient_checkpointing, lora, a positional cache's pool_to left out
        from isoflow.workflow import cache_spec

        spec = cache_spec(effective_spec(built, meta["spec"]), mode) if "spec" in meta else None
        expected = cache_spec(expect["spec"], mode)
        if spec != expected:
            differ = sorted(
                k for k in set(spec or {}) | set(expected) if (spec or {}).get(k) != expected.get(k)
            )
            shown = (
                ", ".join(
                    f"{k} {json_text((spec or {}).get(k))} (config {json_text(expected.get(k))})"
                    for k in differ
                )
                if spec is not None
                else "no spec recorded"
            )
            raise InputError(
                path, "spec", f"encoder spec differs from the config's {built}: {shown}; {fix}"
            )
        if mode == DEFAULT_POOLING and int(meta["pool_to"]) != int(expect["spec"]["pool_to"]):
            raise InputError(
                path,
                "pool_to",
                f"{meta['pool_to']} in this cache, {expect['spec']['pool_to']} in the "
                f"config; {fix}",
            )
        if expect.get("positional") is not None and _normal(pooling) != expect["positional"]:
            raise InputError(
                path,
                "pooling",
                f"{json_text(pooling)} in this cache, {json_text(expect['positional'])} from the "
                f"config's embed section; {fix}",
            )

    def _loader(self, split: str, sampler: Sampler | Sequence[int] | None = None) -> DataLoader:
        # (PrefetchDataLoader leaves worker processes alone: they prefetch on their own)
        kind, extra = DataLoader, {}
        if self.prefetch_batches:
            kind, extra = PrefetchDataLoader, {"prefetch_batches": self.prefetch_batches}
        return kind(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            persistent_workers=self.num_workers > 0,
            # batches from workers are pinned by the loader (the main process pins its own)
            pin_memory=self.pin_memory and self.num_workers > 0,
            **extra,
        )

    def train_dataloader(self) -> DataLoader:
        # under DDP each rank its shard (Lightning leaves a DistributedSampler as it is)
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSeededSampler(len(self.datasets["train"]), self.seed, replicas, rank)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def distinct_dataloader(self, split: str = "test") -> DataLoader:
        """``split``'s loader over its distinct inputs only, each once, in dataset order
        (``IsoformDataset.distinct_inputs``): what ``isoflow.train.predict`` scores."""
        first, _ = self.datasets[split].distinct_inputs()
        return self._loader(split, sampler=first.tolist())
