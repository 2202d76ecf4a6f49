"""Frozen-encoder embedding cache (DESIGN.md "Embedding cache").

``build_cache`` runs an encoder once per distinct sequence (key = sha1 of the sequence;
DNA token arrays are hashed as their ``ACGTN`` text), mean-pools the real tokens to at most
``pool_to`` positions, and writes::

    out_dir/
      shard_00000.npy ...   float16 (rows, dim): pooled token rows, items back to back
      index.parquet         key, shard, offset, length   (one row per distinct sequence)
      items.parquet         item, key                    (key null = missing modality)
      meta.json             dim, pool_to, modality, counts, encoder spec, weights_sha256

The whole folder is written beside ``out_dir`` (``.{name}.partial``) and renamed into place
when complete; at most one shard of rows (``shard_mb``) is held in memory, and a run that
stops leaves its finished shards there for the next run to resume from (``build_cache``).
``EmbeddingCache(out_dir).lookup(keys)`` returns padded ``(B, L, D)`` float32 embeddings and
a ``(B, L)`` mask; an unknown or ``None`` key gives an all-False row. A training loader
resolves its transcripts once (``item_rows``, a :class:`CacheRows`) and gathers each batch
with ``CacheRows.take``: float16 as stored, one ``index_select`` per shard, optionally into
page-locked memory.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from isoflow import cpu
from isoflow.alphabet import DNA_LETTER_CODES, is_missing
from isoflow.errors import InputError
from isoflow.files import atomic_path, replace_path, sync_tree
from isoflow.model.registry import installed_version
from isoflow.progress import Progress

INDEX_FILE = "index.parquet"
ITEMS_FILE = "items.parquet"
META_FILE = "meta.json"
MIB = 1 << 20
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65,504: a larger pooled value is stored inf
SHARD_MB = 1024  # MiB of float16 rows held at once: config/schema.yaml embed.shard_mb default
PRECISIONS = ("bf16", "fp32")  # config `embed.precision`: bf16 autocast on CUDA, or none
PARTIAL_FORMAT = 1  # layout of a partial folder's shard records
# Finished caches by content (DESIGN.md "Embedding cache", docs/rerun.md "Embedding store"):
# results/embeddings/.store/<digest>/, the digest of everything a cache's bytes depend on.
STORE_DIR = ".store"
STORE_FORMAT = 4  # what store_digest hashes; a new format misses every older entry
STORE_RECORD = "stored.json"  # written last, inside the entry: its files' sizes and sha256,
# and the encoder packages' versions (package_versions)
# The package code a cache's rows are computed by, in the store digest (source_digest) with
# the modules of the encoder's own classes: the pooling and batching here, the tokenisers
# and alphabets, the encoder base and registry (token geometry), the settings' defaults.
STORE_SOURCES = (
    "isoflow.alphabet",
    "isoflow.embed",
    "isoflow.model.encoders",
    "isoflow.model.encoders.base",
    "isoflow.model.registry",
    "isoflow.settings",
)
# ISOFLOW_EMBED_STORE=0 (or config embed.store: false): no cache taken from the store; each
# cache is built again and replaces its entry (the way to force a rebuild; docs/rerun.md)
STORE_VARIABLE = "ISOFLOW_EMBED_STORE"

log = logging.getLogger("isoflow.embed")


def sequence_key(seq: str | np.ndarray) -> str:
    """sha1 of a sequence; a DNA token array hashes as its ``ACGTN`` text."""
    if isinstance(seq, np.ndarray):
        data = DNA_LETTER_CODES[np.minimum(seq, 4)].tobytes()
    else:
        data = str(seq).encode("utf-8")
    return hashlib.sha1(data).hexdigest()


POOLINGS = ("adaptive", "positional")  # config `embed.pooling`; experiments' `pooling`


def pool_tokens(emb: torch.Tensor, length: int, pool_to: int) -> torch.Tensor:
    """Mean-pool the first ``length`` rows of ``emb`` (L, D) to at most ``pool_to`` rows.

    Shorter inputs are returned as they are; longer ones are averaged over
    ``pool_to`` near-equal windows (adaptive average pooling).
    """
    real = emb[:length]
    if length <= pool_to:
        return real
    return F.adaptive_avg_pool1d(real.T.unsqueeze(0), pool_to).squeeze(0).T


def positional_stride(pooling: Mapping[str, Any], modality: str, letters_per_token: int) -> int:
    """Tokens per slot of fixed-stride pooling: ``stride_nt`` nucleotides (RNA) or
    ``stride_aa`` residues (protein) over the encoder's letters per token (NT: 6), at least 1."""
    letters = int(pooling["stride_nt" if modality == "rna" else "stride_aa"])
    return max(letters // max(int(letters_per_token), 1), 1)


def pool_positional(
    emb: torch.Tensor, length: int, modality: str, pooling: Mapping[str, Any], letters_per_token=1
) -> torch.Tensor:
    """Positional pooling of the first ``length`` rows of ``emb`` (L, D): a slot means the
    same place in every sequence (docs/encoders.md, "Pooling").

    DNA: the ``dna_crop_bins`` tokens (Enformer/Borzoi bins) centred on the window's centre,
    the TSS, unpooled (a shorter output is kept whole); slot ``dna_crop_bins // 2`` holds the
    TSS. RNA / protein: the mean of each run of :func:`positional_stride` tokens from the
    start of what the encoder read (the last slot: the mean of what is left), so slot ``k``
    covers nucleotides ``[k * stride_nt, (k + 1) * stride_nt)`` of it (exactly for NT's
    6-mers when no N restarts the frame) or residues ``[k * stride_aa, (k + 1) * stride_aa)``.
    That start is the 5' end / N-terminus, except for a sequence longer than its limit under
    ``truncate: keep_3prime``, whose kept part starts inside it (docs/encoders.md)."""
    real = emb[:length]
    if modality == "dna":
        crop = int(pooling["dna_crop_bins"])
        if length <= crop:
            return real
        start = length // 2 - crop // 2
        return real[start : start + crop]
    stride = positional_stride(pooling, modality, letters_per_token)
    if stride == 1:
        return real
    slots = -(-length // stride)
    padded = F.pad(real, (0, 0, 0, slots * stride - length))
    sums = padded.view(slots, stride, -1).sum(dim=1)
    counts = torch.full((slots, 1), float(stride), dtype=sums.dtype)
    counts[-1] = length - (slots - 1) * stride
    return sums / counts


def pool_sequence(
    emb: torch.Tensor, length: int, pooling, modality: str, letters_per_token: int = 1
) -> torch.Tensor:
    """What the cache stores for one sequence: ``pooling`` an int is adaptive pooling to at
    most that many rows (:func:`pool_tokens`, ``pool_to``), a ``{"mode": "positional", ...}``
    mapping positional pooling (:func:`pool_positional`)."""
    if isinstance(pooling, Mapping):
        if pooling.get("mode") != "positional":
            raise ValueError(f"unknown pooling {pooling!r}")
        return pool_positional(emb, length, modality, pooling, letters_per_token)
    return pool_tokens(emb, length, int(pooling))


def max_pooled_rows(pooling, modality: str, letters: int, letters_per_token: int = 1) -> int:
    """An upper bound of the rows :func:`pool_sequence` keeps of a sequence of ``letters``
    letters (bp, nt, aa): at most one token per letter."""
    if not isinstance(pooling, Mapping):
        return int(pooling)
    if modality == "dna":
        return int(pooling["dna_crop_bins"])
    return max(-(-int(letters) // positional_stride(pooling, modality, letters_per_token)), 1)


def pooled_rows(pooling, modality: str, tokens: int, letters_per_token: int = 1) -> int:
    """The rows :func:`pool_sequence` keeps of a sequence the encoder read as ``tokens``
    tokens: what one sequence costs in the cache (``rows * dim * 2`` bytes, float16)."""
    tokens = int(tokens)
    if not isinstance(pooling, Mapping):
        return min(tokens, int(pooling))
    if modality == "dna":
        return min(tokens, int(pooling["dna_crop_bins"]))
    return -(-tokens // positional_stride(pooling, modality, letters_per_token))


def embedding_autocast(device: torch.device | str, precision: str = "fp32"):
    """The context an embedding forward runs in: bf16 autocast on a CUDA device when
    ``precision`` is ``"bf16"``, else none (fp32; a CPU never autocasts here)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


COMPILE_BACKEND = "inductor"  # config `embed.compile: true`; tests also pass "eager"


def eager_again(module) -> None:
    """Undo ``nn.Module.compile`` on ``module`` (its compiled-call hook dropped): its next
    calls run eager. Used after ``embed.compile``'s forwards and ``train.compile``'s
    training."""
    module._compiled_call_impl = None


class CompiledForward:
    """An encoder's forward through ``torch.compile`` for the rest of a ``with`` block
    (``embed.compile``; docs/encoders.md, "Compiled forward"), counting what it compiles.

    ``nn.Module.compile`` in place: every ``encoder(...)`` call in the block runs the
    compiled forward (its graph breaks, e.g. ESM-2's and NT's ``if present.any()``, run
    eagerly between the graphs), and the encoder is back to eager on exit. ``dynamic=None``
    (torch's automatic dynamic shapes): the first input shape compiles a static graph and
    the first change of a dimension recompiles it once with that dimension symbolic, so
    length buckets cost one recompile, not one per width; DNA windows keep one shape when
    the caller pads the short last batch (:func:`build_caches` does). :meth:`forward` logs
    every call that compiled new graphs, with its time (compile and that forward): the
    compile time is in the job's log; :meth:`summary` says how many graphs in all."""

    def __init__(self, encoder, backend: str = COMPILE_BACKEND):
        self.encoder = encoder
        self.backend = backend
        self.graphs = 0
        self.compile_s = 0.0
        self.calls = 0

    def __enter__(self) -> CompiledForward:
        import torch._dynamo

        torch._dynamo.reset()  # process-wide: no earlier code cache or recompile count
        self.encoder.compile(backend=self.backend, dynamic=None)
        return self

    def __exit__(self, *exc) -> None:
        eager_again(self.encoder)

    @staticmethod
    def _graphs() -> int:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])

    def forward(self, **tokens):
        before = self._graphs()
        start = time.perf_counter()
        out = self.encoder(**tokens)
        new = self._graphs() - before
        self.calls += 1
        if new:
            elapsed = time.perf_counter() - start
            self.graphs += new
            self.compile_s += elapsed
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tokens.items())
            log.info(
                "torch.compile (%s): %d new graph(s) for %s in %.1f s (compile and forward; "
                "%d graphs so far)",
                self.backend,
                new,
                shapes,
                elapsed,
                self.graphs,
            )
        return out

    def summary(self) -> str:
        return (
            f"torch.compile ({self.backend}): {self.graphs} graphs compiled in {self.calls} "
            f"forwards; the forwards that compiled took {self.compile_s:.1f} s"
        )


def encode_pooled(
    encoder,
    sequences: list,
    pool_to: int,
    device: torch.device | str | None = None,
    names: list | None = None,
    precision: str = "fp32",
    batch_size: int = 0,
) -> list[torch.Tensor]:
    """One forward of a frozen ``encoder`` over ``sequences`` (one batch, none missing) and
    each sequence's real tokens pooled as ``pool_to`` says (an int: mean-pooled to at most
    that many rows; a positional pooling mapping: :func:`pool_sequence`): a list of float32
    CPU tensors ``(L_i, D)``, what the cache stores (as float16). ``build_cache`` writes
    these; ``isoflow.bundle`` runs the same function on new sequences, so a model fed raw
    sequences sees what training read from the cache. ``names`` (one per sequence) name a
    sequence the encoder returns no token for. ``precision="bf16"`` runs the forward under
    bf16 autocast on CUDA (:func:`embedding_autocast`); pooling is float32 either way.

    ``batch_size`` > 0: one forward per ``batch_size`` sequences, each of exactly that many
    (a short last one padded with copies of its last sequence, dropped again), as
    :func:`build_caches` runs a cache's batches (the spec's ``embed_batch_size``): a CPU
    forward's float32 output for a sequence depends on how many sequences share the
    forward (tiny Enformer on CPU: 1.5e-7 between 8 and 1 or 16), not on which ones, and
    a last-bit difference can flip the float16 the cache rounds to (docs/bundle.md, "The
    export check")."""
    sequences = list(sequences)
    if batch_size <= 0:
        return encode_pooled_many(encoder, sequences, [pool_to], device, names, precision)[0]
    out: list[torch.Tensor] = []
    for start in range(0, len(sequences), batch_size):
        stop = start + batch_size
        part = names[start:stop] if names is not None else None
        out += encode_pooled_many(
            encoder, sequences[start:stop], [pool_to], device, part, precision, pad_to=batch_size
        )[0]
    return out


def encode_pooled_many(
    encoder,
    sequences: list,
    pools: list,
    device: torch.device | str | None = None,
    names: list | None = None,
    precision: str = "fp32",
    forward=None,
    pad_to: int = 0,
) -> list[list[torch.Tensor]]:
    """:func:`encode_pooled` with one forward and several poolings: for each of ``pools``
    the list of pooled rows ``encode_pooled`` returns with that pooling (the same floats:
    pooling reads the same token embeddings). ``build_caches`` writes an adaptive and a
    positional cache from one forward this way (``embed.share_forward``). ``forward``: what
    runs the encoder (default: the encoder; :meth:`CompiledForward.forward` under
    ``embed.compile``); ``pad_to``: a shorter batch is padded to that many sequences with
    copies of its last one (dropped again: every forward of a cache, compiled or not, and of
    the bundle runs on one batch size)."""
    device = device if device is not None else next(encoder.parameters()).device
    sequences = list(sequences)
    n = len(sequences)
    if 0 < n < pad_to:
        sequences = sequences + [sequences[-1]] * (pad_to - n)
    tokens = encoder.tokenize(sequences)
    tokens = {name: t.to(device) for name, t in tokens.items()}
    # no_grad, not inference_mode: rotary-embedding caches (ESM-2, NT) built here
    # would otherwise be inference tensors that break a later backward pass.
    with torch.no_grad(), embedding_autocast(device, precision):
        emb, mask = (forward or encoder)(**tokens)
    emb, mask = emb[:n], mask[:n]
    # Pooled where the forward ran, then copied back: on a GPU only the pooled rows cross
    # to the host (Borzoi's 6,144 x 1,536 float32 per window would be 38 MB): the whole path
    # ran 1.3-2.1x faster on an H200 (docs/benchmarks.md, "GPU figures at real size").
    emb = emb.float()
    mask = mask.cpu()
    lengths = mask.sum(dim=1)
    per_token = int(getattr(encoder, "letters_per_token", 1))
    pooled: list[list[torch.Tensor]] = [[] for _ in pools]
    for row in range(n):
        if not mask[row].any():
            name = names[row] if names is not None else row
            raise InputError(None, name, "encoder returned no real token for a sequence")
        if not bool(mask[row, : lengths[row]].all()):
            raise ValueError("encoder masks must be left-aligned (real tokens first)")
        for out, pool in zip(pooled, pools, strict=True):
            out.append(
                pool_sequence(emb[row], int(lengths[row]), pool, encoder.modality, per_token).cpu()
            )
    return pooled


def check_storable(rows: torch.Tensor, item: Any, key: str, label: str) -> None:
    """One sequence's pooled rows must be finite and within float16's range (|x| <=
    ``FLOAT16_MAX``, 65,504; beyond it float16 stores inf): else an :class:`InputError`
    naming the cache folder and the item, before any row of its batch is stored (the
    partial folder keeps only finished shards, all checked)."""
    peak = rows.abs().amax() if rows.numel() else torch.tensor(0.0)
    if bool(peak <= FLOAT16_MAX):
        return
    what = "NaN or inf" if not bool(torch.isfinite(rows).all()) else f"|value| {float(peak):g}"
    raise InputError(
        label,
        item,
        f"the encoder's pooled output for this sequence ({key}) holds {what}, beyond float16's "
        f"range (max {FLOAT16_MAX:g}): nothing of it is cached; with embed.precision bf16 try "
        "fp32, else check the encoder's weights",
    )


def frozen_encoder(name: str, spec: dict):
    """Encoder ``name`` built from ``spec`` with every block frozen: what ``embed_dataset``
    caches with, and what a model bundle rebuilds for a cached modality."""
    from isoflow.model.encoders import build_encoder

    return build_encoder(name, {**spec, "finetune_last": 0})


def source_modules(encoder: torch.nn.Module) -> list[str]:
    """The isoflow modules :func:`source_digest` covers for ``encoder``, sorted:
    ``STORE_SOURCES`` and the module of every isoflow class in its MRO."""
    names = set(STORE_SOURCES)
    names.update(
        cls.__module__ for cls in type(encoder).__mro__ if cls.__module__.startswith("isoflow.")
    )
    return sorted(names)


def source_digest(encoder: torch.nn.Module) -> str:
    """sha256 of the code of the isoflow modules ``encoder``'s cached rows are computed by:
    ``STORE_SOURCES`` and the module of every isoflow class in the encoder's MRO (its
    family's), each by module name and its syntax tree without docstrings
    (:func:`_code_of`), so a checkout that restores the same code gives the same digest, an
    edited docstring, comment or line break the same, and a changed statement (a pooling or
    tokeniser fix) another. Part of the store digest and of a partial build's fingerprint
    (:func:`build_caches`): a cache, or finished shards, the old code built are never taken
    after a code change."""
    digest = hashlib.sha256()
    for name in source_modules(encoder):
        source = Path(importlib.import_module(name).__file__).read_bytes()
        digest.update(f"{name}\t{_code_digest(source)}\n".encode())
    return digest.hexdigest()


def package_versions(encoder: torch.nn.Module) -> dict[str, str | None]:
    """The installed version of each distribution ``encoder``'s family declares in
    ``PACKAGES`` (the package it wraps and what its forward or tokeniser runs: fair-esm for
    ESM-2, transformers and tokenizers for NT, enformer-pytorch or borzoi-pytorch and
    einops for the DNA families), None where one is not installed. Part of the store digest
    and of a partial build's fingerprint (:func:`build_caches`), and recorded in the store
    entry's ``stored.json``: a cache another version of them computed is not taken after an
    upgrade, and an upgrade of a package another family uses leaves it be. The embed rules'
    params hold the same versions (``isoflow.workflow.embed_packages``), so Snakemake reruns
    the family's embed jobs after an upgrade."""
    names = sorted({n for cls in type(encoder).__mro__ for n in getattr(cls, "PACKAGES", ())})
    return {name: installed_version(name) for name in names}


@functools.lru_cache(maxsize=64)
def _code_digest(source: bytes) -> str:
    """sha256 of :func:`_code_of` a file's bytes, once per content in a process: the syntax
    tree's dump of embed.py is some MB, held while hashed, which every cache build paid."""
    return hashlib.sha256(_code_of(source).encode()).hexdigest()


def _code_of(source: bytes) -> str:
    """The code of a Python file's ``source``: its syntax tree (``ast.dump``, no line numbers)
    with every module, class and function docstring left out. A docstring or comment edit to
    embed.py missed every store entry and, with ``embed.store_keep`` 0, pruned the only copy
    of a cache (GPU-days at full scale); a statement changed still counts, log text
    included."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of the weights ``module`` computes with: each ``state_dict`` tensor in order,
    its dtype, shape and bytes (parameters and persistent buffers, on whatever device they
    are). Recorded in a cache's meta.json (``weights_sha256``) and part of its resume
    fingerprint, so weights that changed under the same spec (a re-download of a moved
    ``revision``) never resume another's shards. The names are left out: a wrapper module
    hashes as the encoder it wraps, and the spec (in the fingerprint too) fixes the
    architecture. 0.3-1 s for a real-size encoder on one CPU thread (docs/encoders.md)."""
    digest = hashlib.sha256()
    for tensor in module.state_dict().values():
        data = tensor.detach()
        digest.update(f"{data.dtype}{tuple(data.shape)};".encode())
        if data.numel():
            raw = data.contiguous().reshape(-1).view(torch.uint8).cpu().numpy()
            digest.update(memoryview(raw))
    return digest.hexdigest()


def shard_rows_for(shard_mb: float, dim: int) -> int:
    """Pooled float16 rows of width ``dim`` that fit a shard of ``shard_mb`` MiB (at least 1)."""
    return max(int(shard_mb * MIB) // (2 * int(dim)), 1)


class _ShardWriter:
    """Fills one preallocated float16 buffer of ``shard_rows`` rows and writes it as a
    finished shard when the next sequence would not fit: the rows held never exceed one
    shard, and no shard is assembled by concatenation (which would hold it twice).

    A shard is finished once ``shard_NNNNN.npy`` (written beside and renamed into place)
    and then its record ``shard_NNNNN.json`` (its keys, offsets and lengths and the run's
    fingerprint) exist: what a resumed run reuses (:func:`_finished_shards`). The record is
    written only once the ``.npy`` is on disk (``fsync``), so a crash of the machine leaves
    no record of a shard whose data was still in the page cache (a zero-length or
    zero-filled ``.npy`` after the reboot). A thread waits for the disk and then writes the
    record while the next shard is encoded (``wait`` joins it): the job does not wait for
    the disk (docs/benchmarks.md, "fsync")."""

    def __init__(
        self, out_dir: Path, dim: int, shard_rows: int, buffer_rows: int, fingerprint: str
    ):
        self.out_dir = out_dir
        self.dim = dim
        self.shard_rows = shard_rows
        self.fingerprint = fingerprint
        self.buffer = np.empty((max(buffer_rows, 1), dim), dtype=np.float16)
        self.shard = 0
        self.rows = 0
        self.index: dict[str, list] = {"key": [], "shard": [], "offset": [], "length": []}
        self._first = 0  # the current shard's first entry in ``index``
        self._syncing: threading.Thread | None = None  # fsync, then the record, of a shard
        self._error: BaseException | None = None

    def resume(self, records: list[dict]) -> None:
        """Start after the shards of ``records`` (finished, checked)."""
        for record in records:
            for name in self.index:
                self.index[name].extend(record[name])
            self.shard += 1
        self._first = len(self.index["key"])

    def add(self, key: str, pooled: np.ndarray) -> None:
        if self.rows and self.rows + len(pooled) > self.shard_rows:
            self.flush()
        self.index["key"].append(key)
        self.index["shard"].append(self.shard)
        self.index["offset"].append(self.rows)
        self.index["length"].append(len(pooled))
        self.buffer[self.rows : self.rows + len(pooled)] = pooled  # cast to float16 in place
        self.rows += len(pooled)

    def flush(self) -> None:
        if not self.rows:
            return
        self.wait()  # the previous shard's record first: records are written in order
        name = f"shard_{self.shard:05d}"
        with atomic_path(self.out_dir / f"{name}.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, self.buffer[: self.rows])  # a view: written as is, no copy
        record = {"fingerprint": self.fingerprint, "rows": self.rows}
        record.update({k: v[self._first :] for k, v in self.index.items()})
        self._syncing = threading.Thread(
            target=self._sync_and_record, args=(name, record), name=f"sync {name}", daemon=True
        )
        self._syncing.start()
        self.shard += 1
        self.rows = 0
        self._first = len(self.index["key"])

    def _sync_and_record(self, name: str, record: dict) -> None:
        try:
            sync_tree(self.out_dir / f"{name}.npy")
            with atomic_path(self.out_dir / f"{name}.json") as tmp:
                tmp.write_text(json.dumps(record) + "\n")
        except BaseException as error:  # raised in the job's thread by wait()
            self._error = error

    def wait(self) -> None:
        """Until the last flushed shard is on disk and recorded; its error, if any."""
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def partial_dir(out_dir: str | os.PathLike) -> Path:
    """Where :func:`build_cache` writes ``out_dir`` until it is complete (and where a killed
    run's finished shards wait for the next run): ``.{name}.partial`` beside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.partial"


def _finished_shards(folder: Path, fingerprint: str, keys: list[str], dim: int) -> list[dict]:
    """The records of the finished shards in ``folder`` that a run of ``fingerprint`` over
    the distinct sequences ``keys`` can reuse: shards 0, 1, ... while each has its record,
    the same fingerprint, the next keys in order and a complete array. Everything else in
    the folder is deleted (an unfinished shard, a shard of another spec or sequence set)."""
    records: list[dict] = []
    done = 0
    while True:
        name = f"shard_{len(records):05d}"
        try:
            record = json.loads((folder / f"{name}.json").read_text())
            array = np.load(folder / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError, EOFError):  # EOFError: a zero-length .npy
            break
        span = record.get("key", [])
        if (
            record.get("fingerprint") != fingerprint
            or span != keys[done : done + len(span)]
            or array.shape != (record.get("rows"), dim)
            or array.dtype != np.float16
        ):
            log.warning(
                "%s/%s: from another encoder spec or sequence set (or other weights); not reused",
                folder,
                name,
            )
            break
        records.append(record)
        done += len(span)
    keep = {f"shard_{i:05d}.{ext}" for i in range(len(records)) for ext in ("npy", "json")}
    for path in folder.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return records


def build_cache(
    encoder,
    items: Mapping[Any, str | np.ndarray | None],
    out_dir: str | os.PathLike,
    pool_to: int,
    batch_size: int = 8,
    meta: dict | None = None,
    shard_rows: int | None = None,
    shard_mb: float = SHARD_MB,
    progress_every_s: float | None = None,
    precision: str = "fp32",
    batch_letters: int = 0,
    pooling: Mapping[str, Any] | None = None,
    part: tuple[int, int] | None = None,
    compile: bool | str = False,
) -> dict[Any, str | None]:
    """Encode each distinct sequence of ``items`` (item ID -> sequence) once and cache it.

    ``items`` may be any mapping, including a lazy one that reads DNA windows on access: it
    is read twice (the keys first, then the sequences to encode) and only ``batch_size``
    sequences are held at a time. The pooled rows held are at most one shard: ``shard_mb``
    MiB of float16 rows (or ``shard_rows`` rows). ``precision="bf16"``: the forwards run
    under bf16 autocast on CUDA (recorded as ``autocast`` in meta.json; nothing changes on
    CPU). ``batch_letters`` > 0 encodes the distinct sequences shortest first in batches of
    at most that many letters (nt, aa or bp) with padding, instead of ``batch_size`` at a
    time in first-seen order (less padding on a GPU; ``items`` must then allow
    ``items[item]``); the rows are then stored in that order. ``pooling`` (a
    ``{"mode": "positional", "dna_crop_bins", "stride_nt", "stride_aa"}`` mapping) pools
    by position instead of adaptively to ``pool_to`` rows (:func:`pool_positional`;
    recorded as ``pooling`` in meta.json). ``part=(i, n)`` encodes only the ``i``-th of
    ``n`` near-equal runs of whole batches (the batches a single job would run, so every
    value is the one a single job stores) into a part cache for :func:`gather_cache` (one
    embed job of ``embed.jobs: n`` each). ``compile`` (``embed.compile``): the forwards
    run through ``torch.compile`` (:class:`CompiledForward`; True: inductor, a string: that
    backend), a short last batch padded to ``batch_size``; recorded as ``compile`` in
    meta.json, and the stored values agree with the eager ones within float16 rounding
    (docs/encoders.md, "Compiled forward"). Returns item ID -> key (None where the sequence
    is missing).

    The cache is written in :func:`partial_dir` and renamed to ``out_dir`` when complete. A
    run that stops (an error, a kill) leaves its finished shards there; the next run with
    the same encoder spec, ``meta``, encoder weights (:func:`weights_digest`), pooling,
    batches, shard size and distinct sequences reuses them and encodes only the rest, in
    the same batches, so its files are the bytes an uninterrupted run writes. Finished
    shards of another run are deleted, not reused.
    """
    return build_caches(
        encoder,
        items,
        [(out_dir, pooling)],
        pool_to,
        batch_size=batch_size,
        meta=meta,
        shard_rows=shard_rows,
        shard_mb=shard_mb,
        progress_every_s=progress_every_s,
        precision=precision,
        batch_letters=batch_letters,
        part=part,
        compile=compile,
    )


class _Target:
    """One cache :func:`build_caches` writes: its folder, pooling, fingerprint, finished
    shards and writer."""

    def __init__(self, out_dir: str | os.PathLike, pooling: Mapping[str, Any] | None):
        self.out_dir = Path(out_dir)
        self.pooling = dict(pooling) if pooling is not None else None
        if self.pooling is not None and self.pooling.get("mode") != "positional":
            raise ValueError(f"pooling must be positional, got {self.pooling!r}")
        self.work = partial_dir(self.out_dir)
        self.done = 0
        self.writer: _ShardWriter | None = None
        self.entry: Path | None = None  # where the finished cache is stored (store given)
        self.packages: dict[str, str | None] = {}  # stored.json's: package_versions


def build_caches(
    encoder,
    items: Mapping[Any, str | np.ndarray | None],
    outputs: Sequence[tuple[str | os.PathLike, Mapping[str, Any] | None]],
    pool_to: int,
    batch_size: int = 8,
    meta: dict | None = None,
    shard_rows: int | None = None,
    shard_mb: float = SHARD_MB,
    progress_every_s: float | None = None,
    precision: str = "fp32",
    batch_letters: int = 0,
    part: tuple[int, int] | None = None,
    compile: bool | str = False,
    record: dict | None = None,
    store: str | os.PathLike | None = None,
    store_reuse: bool = True,
    store_keep: int = 0,
) -> dict[Any, str | None]:
    """:func:`build_cache` for several poolings at once: ``outputs`` lists ``(out_dir,
    pooling)`` pairs (``pooling`` None: adaptive to ``pool_to``), and each batch's forward
    runs once for all of them (:func:`encode_pooled_many`; ``embed.share_forward``). Each
    folder gets the bytes ``build_cache`` writes for it alone, and each resumes from its own
    finished shards (a batch is encoded when any cache still needs it). Holds one shard of
    rows per cache. ``record``: more meta.json fields, outside the resume fingerprint (what
    the items already fix: ``windows_sha256``; on a CPU also ``threads``, the torch threads
    the forwards ran on). ``store`` (not for a part): a folder of finished caches by
    :func:`store_digest`; a cache whose digest is there, its files matching their recorded
    sha256, is hard-linked (else copied) into its folder and not encoded; a cache built is
    moved there whole (one rename) and then linked. ``store_reuse`` False (``embed.store``,
    ``ISOFLOW_EMBED_STORE=0``): no cache is taken from the store, the entry of its digest is
    deleted and the cache built again. Before a cache is built, the entries of the same
    encoder and pooling no cache folder links are deleted but the ``store_keep`` newest
    (:func:`prune_store`; ``embed.store_keep``)."""
    if pool_to < 1:
        raise ValueError(f"pool_to must be >= 1, got {pool_to}")
    backend = (COMPILE_BACKEND if compile is True else str(compile)) if compile else None
    targets = [_Target(out_dir, pooling) for out_dir, pooling in outputs]
    if not targets or len({t.out_dir.resolve() for t in targets}) != len(targets):
        raise ValueError(f"build_caches needs distinct output folders, got {outputs!r}")
    dim = int(encoder.dim)
    per_token = int(getattr(encoder, "letters_per_token", 1))
    if shard_rows is None:
        shard_rows = shard_rows_for(shard_mb, dim)
    # Pass 1: every item's key, and each distinct sequence's first item and length, in
    # order (no sequence is kept).
    item_keys: dict[Any, str | None] = {}
    distinct: dict[str, tuple[Any, int]] = {}
    for item, seq in items.items():
        key = None if is_missing(seq) else sequence_key(seq)
        item_keys[item] = key
        if key is not None and key not in distinct:
            distinct[key] = (item, len(seq))
    keys = list(distinct)  # the order the rows are written in
    plan = None
    if batch_letters:
        # shortest first (stable), each batch as many as fit batch_letters padded letters
        keys.sort(key=lambda k: distinct[k][1])
        plan = [[]]
        for position, key in enumerate(keys):
            width = distinct[key][1]  # the longest so far: the batch's padded width
            if plan[-1] and (len(plan[-1]) + 1) * width > batch_letters:
                plan.append([])
            plan[-1].append(position)
        plan = [batch for batch in plan if batch]
    n_batches = len(plan) if plan is not None else -(-len(keys) // batch_size)
    first, last = 0, n_batches  # this job's batches (all of them unless a part)
    if part is not None:
        index, parts = int(part[0]), int(part[1])
        if not 0 <= index < parts:
            raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part}")
        first, last = index * n_batches // parts, (index + 1) * n_batches // parts

    def batch_start(number: int) -> int:
        if number >= n_batches:
            return len(keys)
        return plan[number][0] if plan is not None else number * batch_size

    lo, hi = batch_start(first), batch_start(last)  # this job's positions in ``keys``
    device = next(encoder.parameters()).device
    autocast = precision == "bf16" and device.type == "cuda"
    if device.type == "cpu":
        # the torch threads of the forwards: on a CPU a kernel may split its sums by them
        # (Enformer's 1x1 convolution), so the bundle encodes new sequences at as many
        # (isoflow.bundle, manifest encoders.<modality>.threads)
        record = {**(record or {}), "threads": torch.get_num_threads()}
    started = time.perf_counter()
    weights = weights_digest(encoder)
    log.info("encoder weights sha256 %s (%.1f s)", weights[:16], time.perf_counter() - started)
    sequences = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    # what a part job records of the single job's plan its batches come from: the gather
    # requires every part's to be the same (gather_cache)
    part_plan = {
        "batch_size": batch_size,
        "batch_letters": batch_letters,
        "device": device.type,
        "sequences": sequences,
    }
    # the code that computes the rows and what it runs on: in the store digest and in a
    # partial build's fingerprint, so neither a stored cache nor a killed build's finished
    # shards made by other code, torch, kernels or threads are taken
    code_state = {
        "source": source_digest(encoder),
        "torch": torch.__version__,
        "packages": package_versions(encoder),
        "cpu_kernels": cpu.kernels_in_effect() if device.type == "cpu" else None,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }
    if store is not None and part is None:
        digest_of = {
            "dim": dim,
            "modality": encoder.modality,
            "pool_to": pool_to,
            "batch_size": batch_size,
            "batch_letters": batch_letters,
            "device": device.type,
            "autocast": autocast,
            "compile": backend,
            "weights": weights,
            "meta": meta or {},
            "record": record or {},
            # the code that computes the rows, and the kernels it runs on
            **code_state,
        }
        remaining = []
        for target in targets:
            target.packages = code_state["packages"]
            target.entry = Path(store) / store_digest(
                {**digest_of, "pooling": target.pooling}, item_keys
            )
            if not store_reuse:
                if target.entry.exists():
                    log.info(
                        "%s: stored cache %s not reused (embed.store false or %s=0): "
                        "deleted, built again",
                        target.out_dir,
                        target.entry.name,
                        STORE_VARIABLE,
                    )
                    shutil.rmtree(target.entry)
                # a forced build holds rows of this build alone: no killed build's shards
                shutil.rmtree(target.work, ignore_errors=True)
                remaining.append(target)
            elif not reuse_stored(target.entry, target.out_dir):
                remaining.append(target)
            elif target.work.exists():  # a killed build of this cache: not needed now
                shutil.rmtree(target.work, ignore_errors=True)
        if not remaining:
            log_store(store)
            return item_keys
        targets = remaining
        if meta and meta.get("encoder"):
            for target in targets:  # what this build supersedes: off the disk before it
                prune_store(store, meta["encoder"], target.pooling, store_keep)
    longest = max((length for _, length in distinct.values()), default=1)
    for target in targets:
        fingerprint = hashlib.sha256(
            json.dumps(
                {
                    "partial_format": PARTIAL_FORMAT,
                    "dim": dim,
                    "modality": encoder.modality,
                    "pool_to": pool_to,
                    "batch_size": batch_size,
                    "batch_letters": batch_letters,
                    "shard_rows": shard_rows,
                    "device": device.type,
                    "autocast": autocast,
                    "meta": meta or {},
                    # only when positional: an adaptive cache's fingerprint is what it was
                    **({"pooling": target.pooling} if target.pooling is not None else {}),
                    "sequences": sequences,
                    "weights": weights,
                    **code_state,
                    **({"part": list(part)} if part is not None else {}),
                    # only when on: a compiled run resumes no eager run's shards (or back)
                    **({"compile": backend} if backend else {}),
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        target.work.mkdir(parents=True, exist_ok=True)
        records = _finished_shards(target.work, fingerprint, keys[lo:hi], dim)
        target.done = lo + sum(len(r["key"]) for r in records)  # before it: no forward
        if records:
            log.info(
                "resuming %s: %d finished shards hold %d of %d distinct sequences",
                target.out_dir,
                len(records),
                target.done - lo,
                hi - lo,
            )
        # A shard holds ``shard_rows`` rows, or one sequence's if that is more (max_rows at
        # most); the buffer is no larger than the sequences still to come can fill.
        pool = target.pooling if target.pooling is not None else pool_to
        max_rows = max_pooled_rows(pool, encoder.modality, longest, per_token)
        buffer_rows = min(max(shard_rows, max_rows), max(hi - target.done, 1) * max_rows)
        target.writer = _ShardWriter(target.work, dim, shard_rows, buffer_rows, fingerprint)
        target.writer.resume(records)
    pools = [t.pooling if t.pooling is not None else pool_to for t in targets]
    done = min(t.done for t in targets)  # positions before it need no forward
    label = " + ".join(t.out_dir.name for t in targets)
    progress = Progress(f"embed {label}", hi - done, "sequences", progress_every_s, log)
    was_training = encoder.training
    encoder.eval()
    compiled = CompiledForward(encoder, backend) if backend else None
    forward = compiled.forward if compiled else None
    # batches of batch_size: the short last one padded, so every forward runs on batch_size
    # sequences, as the bundle encodes new ones (encode_pooled's batch_size): a CPU forward's
    # float32 output depends on the batch's size, and a last-bit change can flip the
    # float16 stored; the compiled forward keeps one batch size too (length buckets vary in
    # size anyway: automatic dynamic shapes)
    pad_to = batch_size if plan is None else 0
    stack = contextlib.ExitStack()
    if compiled:  # eager again when the stack closes, however the forwards end
        stack.enter_context(compiled)
    try:
        # Pass 2: the batches (the same whether or not the run resumes); a batch wholly in
        # every cache's finished shards is skipped, one that straddles a cache's last
        # finished shard is encoded whole and only its rest kept there.
        batch: list[tuple[int, str, Any]] = []
        position = 0

        def encode(batch) -> None:
            names = [distinct[key][0] for _, key, _ in batch]  # each sequence's first item
            sequences = [s for _, _, s in batch]
            pooled = encode_pooled_many(
                encoder, sequences, pools, device, names, precision, forward, pad_to
            )
            for target, rows_of in zip(targets, pooled, strict=True):
                for (_, key, _), name, rows in zip(batch, names, rows_of, strict=True):
                    check_storable(rows, name, key, target.out_dir)
            for target, rows_of in zip(targets, pooled, strict=True):
                for (pos, key, _), rows in zip(batch, rows_of, strict=True):
                    if target.done <= pos < hi:
                        target.writer.add(key, rows.numpy())
            progress.update(sum(done <= pos < hi for pos, _, _ in batch))

        if plan is not None:  # length buckets: each sequence read by its first item
            for positions in plan[first:last]:
                if positions[-1] >= done:
                    encode([(p, keys[p], items[distinct[keys[p]][0]]) for p in positions])
        else:  # batches of batch_size in first-seen order, read as the items come
            for item, seq in items.items():
                key = item_keys[item]
                if key is None or position >= len(keys) or key != keys[position]:
                    continue  # missing, or a sequence met before
                batch.append((position, key, seq))
                position += 1
                if len(batch) == batch_size:
                    if position > done and batch[0][0] < hi:
                        encode(batch)
                    batch = []
            if position != len(keys):
                raise RuntimeError(f"{label}: the items changed while they were read")
            if batch and position > done and batch[0][0] < hi:
                encode(batch)
        for target in targets:
            target.writer.flush()
            target.writer.wait()
        progress.finish()
        if compiled:
            log.info("%s", compiled.summary())
        if getattr(encoder, "recentred_windows", 0):  # NT on DNA: N letters near the TSS
            log.info(
                "%s: %d of %d DNA windows had N letters in the encoder's crop: their tokens "
                "were re-centred on the TSS token (nucleotide_transformer.dna_token_ids)",
                label,
                encoder.recentred_windows,
                encoder.dna_windows,
            )
    except BaseException:
        stack.close()
        encoder.train(was_training)
        for target in targets:
            with contextlib.suppress(Exception):  # the error under way is the one to raise
                target.writer.wait()  # a shard being synced gets its record
            if target.writer.shard:
                log.warning(
                    "%s: stopped; %d finished shards kept in %s for the next run",
                    target.out_dir,
                    target.writer.shard,
                    target.work,
                )
            else:
                shutil.rmtree(target.work, ignore_errors=True)
        raise
    stack.close()
    encoder.train(was_training)
    for target in targets:
        _finish_cache(
            target,
            item_keys,
            keys,
            dim,
            encoder.modality,
            pool_to,
            last - first,
            autocast,
            meta,
            part,
            backend,
            weights,
            part_plan,
            record,
        )
    if store is not None and part is None:
        log_store(store)
    return item_keys


def _finish_cache(
    target: _Target,
    item_keys: dict[Any, str | None],
    keys: list[str],
    dim: int,
    modality: str,
    pool_to: int,
    n_forward_batches: int,
    autocast: bool,
    meta: dict | None,
    part: tuple[int, int] | None,
    backend: str | None = None,
    weights: str | None = None,
    part_plan: dict | None = None,
    record: dict | None = None,
) -> None:
    """Write ``target``'s index, items and meta.json and move it into place. A part cache's
    meta.json also records ``part`` and ``part_plan`` (batches, device, sequence order of the
    single job's plan), which :func:`gather_cache` checks and leaves out."""
    writer, work, out_dir = target.writer, target.work, target.out_dir
    pq.write_table(
        pa.table(
            {
                "key": pa.array(writer.index["key"], pa.string()),
                "shard": pa.array(writer.index["shard"], pa.int32()),
                "offset": pa.array(writer.index["offset"], pa.int64()),
                "length": pa.array(writer.index["length"], pa.int32()),
            }
        ),
        work / INDEX_FILE,
    )
    pq.write_table(
        pa.table(
            {
                "item": pa.array([str(i) for i in item_keys], pa.string()),
                "key": pa.array(list(item_keys.values()), pa.string()),
            }
        ),
        work / ITEMS_FILE,
    )
    info = {
        "dim": dim,
        "modality": modality,
        "pool_to": pool_to,
        **({"pooling": target.pooling} if target.pooling is not None else {}),
        "n_items": len(item_keys),
        "n_missing": sum(k is None for k in item_keys.values()),
        "n_sequences": len(keys),
        "n_forward_batches": n_forward_batches,
        "n_shards": writer.shard,
        **({"autocast": "bf16"} if autocast else {}),
        **({"compile": backend} if backend else {}),
        **({"weights_sha256": weights} if weights else {}),
        **(meta or {}),
        **(record or {}),
        **({"part": list(part), "part_plan": part_plan} if part is not None else {}),
    }
    (work / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    for number in range(writer.shard):
        (work / f"shard_{number:05d}.json").unlink()
    if target.entry is None:
        replace_path(work, out_dir, fsync=True)
    else:
        _store(work, target.entry, target.packages)
        _link_entry(target.entry, out_dir)
    log.info(
        "cached %d distinct sequences of %d items (%d missing) in %s",
        len(keys),
        len(item_keys),
        info["n_missing"],
        out_dir,
    )


def store_digest(fields: Mapping[str, Any], item_keys: Mapping[Any, str | None]) -> str:
    """The store key of a cache: sha256 of ``fields`` (what its bytes depend on besides the
    items: encoder spec and weights, pooling, batches, device, autocast, compile, the meta
    recorded) and of its items in order with their sequence keys (the sha1 of each
    sequence, so a changed sequence or window is another digest). Not the shard size: the
    same rows split otherwise are the same cache. The dataset's other columns (targets,
    splits) are not in it: a dataset rewritten with the same items and sequences keeps it."""
    digest = hashlib.sha256(
        json.dumps({"store_format": STORE_FORMAT, **fields}, sort_keys=True, default=str).encode()
    )
    for item, key in item_keys.items():
        digest.update(f"\n{item}\t{key or ''}".encode())
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _store(work: Path, entry: Path, packages: Mapping[str, str | None] | None = None) -> None:
    """Move the finished cache ``work`` into the store as ``entry``: its record
    (``STORE_RECORD``: each file's size and sha256, the date, ``packages``: the encoder
    packages' versions) written and everything synced first, then one rename, so an entry
    is whole or absent (a kill before the rename leaves the partial folder, which is never
    read as an entry). An entry another job stored meanwhile is kept (the same digest: the
    same bytes) and ``work`` deleted."""
    files = {
        path.name: [path.stat().st_size, _sha256_file(path)]
        for path in sorted(work.iterdir())
        if path.is_file()
    }
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    record = {
        "digest": entry.name,
        "built": built,
        "packages": dict(packages or {}),
        "files": files,
    }
    (work / STORE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    sync_tree(work)
    entry.parent.mkdir(parents=True, exist_ok=True)
    if entry.exists() and not (entry / STORE_RECORD).is_file():
        shutil.rmtree(entry)  # what a delete killed half way left: not an entry
    try:
        os.rename(work, entry)
    except OSError:
        if not (entry / STORE_RECORD).is_file():
            raise
        shutil.rmtree(work, ignore_errors=True)
    sync_tree(entry.parent, recursive=False)


def _link_entry(entry: Path, out_dir: Path) -> str:
    """The files of store ``entry`` (those its record lists) into ``out_dir``, replacing it
    whole: hard links, or copies (with their mtimes) where the filesystem refuses a link
    (logged). Returns "hard-linked" or "copied"."""
    names = list(json.loads((entry / STORE_RECORD).read_text())["files"])
    how = "hard-linked"
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in names:
            try:
                os.link(entry / name, tmp / name)
            except OSError as error:
                if how == "hard-linked":
                    log.info("%s: cannot hard-link from %s (%s): copied", out_dir, entry, error)
                how = "copied"
                shutil.copy2(entry / name, tmp / name)
    return how


def reuse_stored(entry: str | os.PathLike, out_dir: str | os.PathLike) -> bool:
    """Put the stored cache ``entry`` at ``out_dir`` (:func:`_link_entry`) when it is whole:
    its record there and every file it lists of that size and sha256 (hashing it reads the
    cache once: minutes for the largest, against GPU-days to build it). Otherwise False, and
    an entry that is there but not whole (a file changed in place through a link, a record
    missing) is deleted with a warning, so the cache is built again."""
    entry, out_dir = Path(entry), Path(out_dir)
    if not entry.is_dir():
        return False
    started = time.perf_counter()
    try:
        record = json.loads((entry / STORE_RECORD).read_text())
        files = record["files"]
        damaged = [
            name
            for name, (size, sha256) in files.items()
            if not (entry / name).is_file()
            or (entry / name).stat().st_size != size
            or _sha256_file(entry / name) != sha256
        ]
    except (OSError, ValueError, KeyError, TypeError):
        damaged = [STORE_RECORD]
    if damaged:
        log.warning(
            "%s: stored cache not whole (%s missing or changed): deleted, %s built again",
            entry,
            ", ".join(damaged[:3]),
            out_dir,
        )
        shutil.rmtree(entry, ignore_errors=True)
        return False
    how = _link_entry(entry, out_dir)
    log.info(
        "reused cache %s (built %s): %d files %s into %s (sha256 checked in %.1f s)",
        entry.name,
        record.get("built"),
        len(files),
        how,
        out_dir,
        time.perf_counter() - started,
    )
    return True


def prune_store(
    store: str | os.PathLike,
    encoder: str,
    pooling: Mapping[str, Any] | None,
    keep: int = 0,
) -> list[str]:
    """Delete the entries of ``store`` of cache folders of ``encoder`` with ``pooling``
    (None: adaptive) that no cache folder links (every file its record lists has one link:
    the store's), but the ``keep`` newest (``embed.store_keep``). :func:`build_caches` calls
    it before it builds such a cache (no entry matched: the items, spec, code or kernels
    changed), so a superseded cache is off the disk before the new one is written. Only
    the same encoder and pooling: an entry another job just stored, before it links it,
    is another encoder's or pooling's. Returns the digests deleted (logged, with the bytes
    freed)."""
    kind = json.dumps(dict(pooling) if pooling is not None else None, sort_keys=True, default=str)
    unlinked = []
    for entry in sorted(Path(store).iterdir()) if Path(store).is_dir() else []:
        try:
            files = json.loads((entry / STORE_RECORD).read_text())["files"]
            info = json.loads((entry / META_FILE).read_text())
            if info.get("encoder") != encoder or kind != json.dumps(
                info.get("pooling"), sort_keys=True, default=str
            ):
                continue
            stats = [(entry / name).stat() for name in files]
            if all(stat.st_nlink == 1 for stat in stats):
                built = (entry / STORE_RECORD).stat().st_mtime
                unlinked.append((built, entry, sum(stat.st_size for stat in stats)))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not an entry whole (reuse_stored deletes such a one when it meets it)
    unlinked.sort(key=lambda found: found[0], reverse=True)
    deleted = []
    for _, entry, size in unlinked[max(int(keep), 0) :]:
        shutil.rmtree(entry, ignore_errors=True)
        deleted.append(entry.name)
        log.info(
            "embedding store: deleted %s, a %s cache of %s no cache folder links "
            "(embed.store_keep %d): %.2f GiB freed",
            entry.name,
            "positional" if pooling is not None else "adaptive",
            encoder,
            keep,
            size / (1 << 30),
        )
    return deleted


def log_store(store: str | os.PathLike) -> dict[str, int]:
    """Log (and return) the size of the embedding store: its entries, their bytes, and the
    bytes only the store holds (files no cache folder links: what deleting them frees)."""
    sizes = {"entries": 0, "bytes": 0, "bytes_unlinked": 0}
    for entry in sorted(Path(store).iterdir()) if Path(store).is_dir() else []:
        if entry.is_dir():
            sizes["entries"] += 1
            for path in entry.iterdir():
                info = path.stat()
                sizes["bytes"] += info.st_size
                sizes["bytes_unlinked"] += info.st_size if info.st_nlink == 1 else 0
    log.info(
        "embedding store %s: %d caches, %.2f GiB; %.2f GiB held by no cache folder "
        "(deleting an entry is safe: a job that needs it builds it again; docs/rerun.md)",
        store,
        sizes["entries"],
        sizes["bytes"] / (1 << 30),
        sizes["bytes_unlinked"] / (1 << 30),
    )
    return sizes


def _flat(meta: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``meta`` with nested mappings as dotted keys (``spec.pool_to``), for comparing two."""
    flat: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# meta.json fields that differ between the part caches of one embedding (each part's own);
# every other field must be part 0's (gather_cache). ``part_plan`` is compared, then left
# out of the gathered meta.json with ``part``.
PART_FIELDS = ("part", "n_forward_batches", "n_shards")
PART_ONLY_FIELDS = ("part", "part_plan")


def gather_cache(part_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> None:
    """One cache from the part caches of ``build_cache(part=(i, n))``, ``i = 0 .. n-1`` in
    order: their shards renumbered one after another (hard links where the file system
    allows, else copies), one ``index.parquet``, the ``items.parquet`` they share and the
    first part's ``meta.json`` with the totals, so a reader sees what one job would have
    written: the same keys, items and stored values (the shard boundaries may differ).
    Written beside ``out_dir`` and renamed into place.

    Checked first, each a one-line :class:`InputError` naming the part folder: each part
    says it is part ``i`` of ``n``; the parts share ``items.parquet`` byte for byte; every
    part's meta.json equals part 0's but for ``PART_FIELDS`` (same encoder, spec, weights,
    pooling, autocast, compile, batch plan: ``part_plan``); the parts' index keys are
    distinct and together exactly the non-null keys of ``items.parquet``."""
    parts = [Path(p) for p in part_dirs]
    metas = [json.loads((p / META_FILE).read_text()) for p in parts]
    n = len(parts)
    for number, (path, meta) in enumerate(zip(parts, metas, strict=True)):
        if meta.get("part") != [number, n]:
            raise InputError(path, META_FILE, f"is not part {number} of {n}")
    if "part_plan" not in metas[0]:
        raise InputError(
            parts[0],
            META_FILE,
            "records no part_plan (a part cache from before the gather checked settings); "
            "rebuild the parts (rule embed_part)",
        )
    shared = [_flat({k: v for k, v in m.items() if k not in PART_FIELDS}) for m in metas]
    for path, meta in zip(parts[1:], shared[1:], strict=True):
        differ = sorted(k for k in set(meta) | set(shared[0]) if meta.get(k) != shared[0].get(k))
        if differ:
            shown = "; ".join(
                f"{k} {json.dumps(meta.get(k), default=str)} here, "
                f"{json.dumps(shared[0].get(k), default=str)} in part 0"
                for k in differ
            )
            raise InputError(
                path,
                META_FILE,
                f"built with other settings than part 0 ({parts[0]}): {shown}; rebuild the "
                "parts (rule embed_part) from one config",
            )
    items = [(p / ITEMS_FILE).read_bytes() for p in parts]
    if any(data != items[0] for data in items):
        other = parts[next(i for i, data in enumerate(items) if data != items[0])]
        raise InputError(
            other,
            ITEMS_FILE,
            f"differs from part 0's ({parts[0]}): the parts were built from different items; "
            "rebuild them (rule embed_part) from one dataset",
        )
    tables = [pq.read_table(p / INDEX_FILE).to_pydict() for p in parts]
    owner: dict[str, Path] = {}
    for path, table in zip(parts, tables, strict=True):
        for key in table["key"]:
            if key in owner:
                where = "twice in this part" if owner[key] == path else f"also in {owner[key]}"
                raise InputError(
                    path / INDEX_FILE,
                    key,
                    f"sequence {where}: the parts ran different batch plans; rebuild them "
                    "(rule embed_part) from one config",
                )
            owner[key] = path
    item_table = pq.read_table(parts[0] / ITEMS_FILE).to_pydict()
    for item, key in zip(item_table["item"], item_table["key"], strict=True):
        if key is not None and key not in owner:
            raise InputError(
                parts[0].parent,
                item,
                f"its sequence ({key}) is in none of the {n} parts' {INDEX_FILE}: the parts "
                "ran different batch plans; rebuild them (rule embed_part) from one config",
            )
    wanted = {k for k in item_table["key"] if k is not None}
    for key, path in owner.items():
        if key not in wanted:
            raise InputError(
                path / INDEX_FILE,
                key,
                f"is the key of no item in {ITEMS_FILE} (a damaged part); rebuild the parts "
                "(rule embed_part)",
            )
    index: dict[str, list] = {"key": [], "shard": [], "offset": [], "length": []}
    with atomic_path(out_dir, fsync=True) as tmp:  # the shards linked (or copied) in
        tmp.mkdir(parents=True)
        shard = 0
        for path, meta, table in zip(parts, metas, tables, strict=True):
            for name in ("key", "offset", "length"):
                index[name] += table[name]
            index["shard"] += [shard + s for s in table["shard"]]
            for number in range(int(meta["n_shards"])):
                source = path / f"shard_{number:05d}.npy"
                target = tmp / f"shard_{shard + number:05d}.npy"
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
            shard += int(meta["n_shards"])
        pq.write_table(
            pa.table(
                {
                    "key": pa.array(index["key"], pa.string()),
                    "shard": pa.array(index["shard"], pa.int32()),
                    "offset": pa.array(index["offset"], pa.int64()),
                    "length": pa.array(index["length"], pa.int32()),
                }
            ),
            tmp / INDEX_FILE,
        )
        (tmp / ITEMS_FILE).write_bytes(items[0])
        info = {k: v for k, v in metas[0].items() if k not in PART_ONLY_FIELDS}
        info["n_forward_batches"] = sum(int(m["n_forward_batches"]) for m in metas)
        info["n_shards"] = shard
        info["jobs"] = n
        (tmp / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    log.info("gathered %d part caches (%d shards) into %s", n, shard, out_dir)


def rebuild_hint(path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> str:
    """How to rebuild the cache folder ``path`` whose meta.json is ``meta``: a command that
    works whichever rule writes it (``--forcerun`` of the folder itself; ``-R embed`` planned
    nothing when rule embed_shared writes the caches) and that rule: embed for an adaptive
    cache, embed_positional for a positional one (its meta.json ``pooling``), embed_shared for
    either under ``embed.share_forward``, which this side of the workflow does not see."""
    pooling = (meta or {}).get("pooling")
    positional = isinstance(pooling, Mapping) and pooling.get("mode") == "positional"
    rule = "embed_positional" if positional else "embed"
    return (
        f"rebuild it: snakemake --forcerun {path} (rule {rule}, or embed_shared under "
        "embed.share_forward, writes it)"
    )


def shard_header(path: Path, dim: int, rows: int) -> str | None:
    """What is wrong with shard ``path`` for a cache of width ``dim`` whose index reads its
    first ``rows`` rows (None: nothing): missing, not a ``.npy``, not 2-D float16 of ``dim``
    columns, fewer rows, or shorter than its header says (cut short). Reads the header only."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            start = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        return "missing (meta.json records this shard)"
    except (OSError, ValueError, EOFError) as error:
        return f"not a readable .npy array ({error})"
    if dtype != np.float16 or len(shape) != 2 or shape[1] != dim:
        return f"holds {dtype} rows of shape {tuple(shape)}, not float16 rows of width {dim}"
    if shape[0] < rows:
        return f"holds {shape[0]} rows, the index reads {rows}"
    need = start + shape[0] * shape[1] * dtype.itemsize
    if size < need:
        return f"cut short: {size} bytes, its header says {need}"
    return None


class EmbeddingCache:
    """Read side of :func:`build_cache`; shards are memory-mapped, not loaded."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir)
        for name in (INDEX_FILE, META_FILE):
            if not (self.path / name).exists():
                raise InputError(self.path / name, None, "embedding cache is incomplete")
        self.meta = json.loads((self.path / META_FILE).read_text())
        self.dim = int(self.meta["dim"])
        self.modality = self.meta.get("modality")
        index = pq.read_table(self.path / INDEX_FILE).to_pydict()
        self._check_shards(index)
        self._index = {
            key: (shard, offset, length)
            for key, shard, offset, length in zip(
                index["key"], index["shard"], index["offset"], index["length"], strict=True
            )
        }
        self._shards: dict[int, np.ndarray] = {}
        self._tensors: dict[int, torch.Tensor] = {}
        self._items: dict[str, str | None] | None = None

    def _check_shards(self, index: dict[str, list]) -> None:
        """Every ``shard_{i}.npy`` the cache has (``i`` < meta.json's ``n_shards``, every shard
        the index names among them) must be a 2-D float16 ``.npy`` of ``dim`` columns, with at
        least the rows the index reads from it, all on disk: a missing, truncated or foreign
        shard (or an index past its end) is one line naming it now, not an error without a
        file name (or wrong rows) at the first batch that touches it. Only each file's
        header and size are read (:func:`shard_header`), never its rows: docs/benchmarks.md."""
        shard = np.asarray(index["shard"], dtype=np.int64)
        n_shards = int(self.meta.get("n_shards", shard.max() + 1 if len(shard) else 0))
        offset = np.asarray(index["offset"], dtype=np.int64)
        length = np.asarray(index["length"], dtype=np.int64)
        fix = rebuild_hint(self.path, self.meta)
        bad = (shard < 0) | (shard >= n_shards) | (offset < 0) | (length < 0)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise InputError(
                self.path / INDEX_FILE,
                index["key"][at],
                f"shard {shard[at]}, offset {offset[at]}, length {length[at]} is not in the "
                f"{n_shards} shards meta.json records; {fix}",
            )
        ends = np.zeros(n_shards, dtype=np.int64)
        np.maximum.at(ends, shard, offset + length)
        for number in range(n_shards):
            path = self.path / f"shard_{number:05d}.npy"
            problem = shard_header(path, self.dim, int(ends[number]))
            if problem:
                raise InputError(path, None, f"{problem}; {fix}")

    def __getstate__(self) -> dict:
        # DataLoader workers get the index, not copies of memory-mapped shards.
        state = dict(self.__dict__)
        state["_shards"] = {}
        state["_tensors"] = {}
        return state

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def _shard(self, shard: int) -> np.ndarray:
        if shard not in self._shards:
            self._shards[shard] = np.load(self.path / f"shard_{shard:05d}.npy", mmap_mode="r")
        return self._shards[shard]

    def _shard_tensor(self, shard: int) -> torch.Tensor:
        """The memory-mapped shard as a torch tensor (no copy; only ever read)."""
        if shard not in self._tensors:
            with warnings.catch_warnings():  # read-only map: torch warns that it is not writable
                warnings.simplefilter("ignore", UserWarning)
                self._tensors[shard] = torch.from_numpy(self._shard(shard))
        return self._tensors[shard]

    def item_keys(self, items: Iterable[Any]) -> list[str | None]:
        """Keys of item IDs as recorded by ``build_cache`` (None if missing or unknown)."""
        if self._items is None:
            table = pq.read_table(self.path / ITEMS_FILE).to_pydict()
            self._items = dict(zip(table["item"], table["key"], strict=True))
        return [self._items.get(str(i)) for i in items]

    def rows(self, keys: Iterable[str | None]) -> CacheRows:
        """Where each key's pooled rows lie (shard, offset, length); length 0 for a ``None``
        or unknown key."""
        found = [self._index.get(k) if k is not None else None for k in keys]
        table = np.array([f if f is not None else (-1, 0, 0) for f in found], dtype=np.int64)
        table = table.reshape(-1, 3)
        return CacheRows(self, table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy())

    def item_rows(self, items: Iterable[Any]) -> CacheRows:
        """``rows`` by item ID (e.g. transcript ID) instead of sequence key."""
        return self.rows(self.item_keys(items))

    def gather(
        self, shard: np.ndarray, offset: np.ndarray, length: np.ndarray, pin_memory: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(emb (B, L, D) float16, mask (B, L) bool)`` of the entries at (shard, offset,
        length), L = longest entry (at least 1), padding and missing entries zero.

        The rows are copied from the memory-mapped shard by one ``torch.index_select`` per
        shard the batch touches (one in all when the cache has one shard), straight into the
        output, which is page-locked with ``pin_memory`` (for an asynchronous copy to a GPU).
        The stored float16 values are kept: the model casts them on its device (exact).
        """
        batch = len(length)
        width = max(int(length.max()) if batch else 0, 1)
        positions = np.arange(width)
        mask = positions < length[:, None]
        # an entry's positions past its end repeat its last row (zeroed below): valid indices
        rows = offset[:, None] + np.minimum(positions, np.maximum(length - 1, 0)[:, None])
        rows = torch.from_numpy(rows.reshape(-1))
        flat = torch.empty((batch * width, self.dim), dtype=torch.float16, pin_memory=pin_memory)
        present = length > 0
        shards = np.unique(shard[present])
        if len(shards) == 1 and present.all():
            torch.index_select(self._shard_tensor(int(shards[0])), 0, rows, out=flat)
        else:
            for number in shards:
                chosen = torch.from_numpy(np.repeat(present & (shard == number), width))
                flat[chosen] = torch.index_select(self._shard_tensor(int(number)), 0, rows[chosen])
        padding = np.flatnonzero(~mask.reshape(-1))
        if len(padding):
            flat.index_fill_(0, torch.from_numpy(padding), 0)
        mask_tensor = torch.from_numpy(mask)
        emb = flat.view(batch, width, self.dim)
        return emb, mask_tensor.pin_memory() if pin_memory else mask_tensor

    def lookup(self, keys: Iterable[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(emb (B, L, D) float32, mask (B, L) bool)``, L = longest entry (at least 1)."""
        emb, mask = self.rows(keys).take()
        return emb.float(), mask

    def lookup_items(self, items: Iterable[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``lookup`` by item ID (e.g. transcript ID) instead of sequence key."""
        return self.lookup(self.item_keys(items))


class CacheRows:
    """Where the entries of a list of keys or items lie in an :class:`EmbeddingCache`
    (numpy arrays ``shard``, ``offset``, ``length``, one element per key; length 0 for a
    missing one), resolved once so a batch is gathered without a dictionary lookup per item."""

    def __init__(self, cache: EmbeddingCache, shard, offset, length):
        self.cache = cache
        self.shard, self.offset, self.length = shard, offset, length

    def __len__(self) -> int:
        return len(self.length)

    def take(
        self, positions: np.ndarray | None = None, pin_memory: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`EmbeddingCache.gather` of the entries at ``positions`` (default: all)."""
        if positions is None:
            return self.cache.gather(self.shard, self.offset, self.length, pin_memory)
        return self.cache.gather(
            self.shard[positions], self.offset[positions], self.length[positions], pin_memory
        )


# ---------------------------------------------------------------------------------------
# The `embed` rule: which sequences of the dataset an encoder caches.


WINDOW_COLUMNS = ("transcript_id", "chrom", "window_start", "window_end", "strand")


def windows_digest(df) -> str:
    """sha256 over a dataset's DNA windows: each transcript's ``WINDOW_COLUMNS`` as a tab-
    separated line, sorted by transcript ID (row order does not matter). A DNA cache records it
    (``windows_sha256``) and the loader compares it with the dataset's, so a cache of other
    windows (another ``dna.window``, TSS or contig names) is refused; the genome's letters
    are not in it."""
    lines = sorted(
        "\t".join(str(v) for v in row) + "\n"
        for row in df[list(WINDOW_COLUMNS)].itertuples(index=False)
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


class DnaWindows(Mapping):
    """Transcript ID -> DNA window tokens, read from the genome only when accessed."""

    def __init__(self, df, genome_fasta: str | os.PathLike):
        from isoflow.genome import GenomeWindows

        self._rows = {
            row.transcript_id: (row.chrom, int(row.window_start), int(row.window_end), row.strand)
            for row in df[
                ["transcript_id", "chrom", "window_start", "window_end", "strand"]
            ].itertuples(index=False)
        }
        self._genome = GenomeWindows(genome_fasta)

    def __getitem__(self, transcript_id: str) -> np.ndarray:
        return self._genome.tokens(*self._rows[transcript_id])

    def __iter__(self):
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


# the dataset column each modality read from the dataset table is in (DNA: genome windows)
SEQUENCE_COLUMNS = {"rna": "rna_seq", "protein": "protein_seq"}


def dataset_items(df, modality: str, genome_fasta: str | os.PathLike | None = None) -> Mapping:
    """Transcript ID -> the sequence an encoder of ``modality`` reads (None: missing)."""
    if modality == "dna":
        if genome_fasta is None:
            raise ValueError("a DNA encoder needs the genome FASTA")
        return DnaWindows(df, genome_fasta)
    column = SEQUENCE_COLUMNS[modality]
    return {
        tid: None if is_missing(seq) else seq
        for tid, seq in zip(df["transcript_id"], df[column], strict=True)
    }


def embed_dataset(
    dataset: str | os.PathLike,
    encoder_name: str,
    spec: dict,
    out_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike | None = None,
    device: str | None = None,
    shard_mb: float = SHARD_MB,
    precision: str = "bf16",
    batch_letters: int = 0,
    pooling: Mapping[str, Any] | None = None,
    part: tuple[int, int] | None = None,
    also: Sequence[tuple[str | os.PathLike, Mapping[str, Any] | None]] = (),
    compile: bool = False,
    store: str | os.PathLike | None | bool = True,
    store_reuse: bool = True,
    store_keep: int = 0,
) -> dict:
    """Cache the embeddings of every transcript of a dataset table for one encoder, holding
    at most ``shard_mb`` MiB of it (config ``embed.shard_mb``) at a time; on CUDA the
    forwards run under bf16 autocast unless ``precision`` (``embed.precision``) is fp32.
    ``pooling``: positional pooling (``isoflow.workflow.embed_pooling``; rule
    embed_positional) instead of the spec's adaptive ``pool_to``. ``part=(i, n)``: the
    ``i``-th of ``n`` part caches of one scattered embedding (``embed.jobs``;
    :func:`gather_cache` joins them). ``also``: more ``(out_dir, pooling)`` caches written
    from the same forwards (:func:`build_caches`; rule embed_shared, ``embed.share_forward``).
    ``compile``: the forwards through ``torch.compile`` (``embed.compile``,
    :class:`CompiledForward`). ``store``: the store of finished caches
    (:func:`build_caches`); True (default): ``STORE_DIR`` beside ``out_dir``
    (results/embeddings/.store), False or None: none. A part cache is never stored.
    ``store_reuse`` (``embed.store``; False also when the environment has
    ``ISOFLOW_EMBED_STORE=0``) and ``store_keep`` (``embed.store_keep``): see
    :func:`build_caches`."""
    from isoflow.dataset import read_dataset

    store_reuse = store_reuse and store_env()

    df, _ = read_dataset(dataset)
    encoder = frozen_encoder(encoder_name, spec)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder.to(device)
    items = dataset_items(df, encoder.modality, genome_fasta)
    from isoflow.workflow import cache_spec

    # recorded (meta.json) and fingerprinted as far as the content depends on it: pool_to
    # only when an adaptive cache is among the outputs
    positional_only = pooling is not None and all(p is not None for _, p in also)
    spec = cache_spec(spec, "positional" if positional_only else "adaptive")
    pool_to = int(spec["pool_to"])
    batch_size = int(spec["embed_batch_size"])
    log.info(
        "embedding %d transcripts with %s (%s, dim %d) on %s, %s",
        len(items),
        encoder_name,
        encoder.modality,
        encoder.dim,
        device,
        f"pool_to {pool_to}" if pooling is None else f"pooling {dict(pooling)}",
    )
    keys = build_caches(
        encoder,
        items,
        [(out_dir, pooling), *also],
        pool_to=pool_to,
        batch_size=batch_size,
        meta={"encoder": encoder_name, "spec": spec},
        shard_mb=shard_mb,
        precision=precision,
        batch_letters=batch_letters,
        part=tuple(part) if part is not None else None,
        compile=compile,
        record={"windows_sha256": windows_digest(df)} if encoder.modality == "dna" else None,
        store=Path(out_dir).parent / STORE_DIR if store is True else (store or None),
        store_reuse=store_reuse,
        store_keep=store_keep,
    )
    return keys


def store_env(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``ISOFLOW_EMBED_STORE`` is 0 (or false, no, off): no cache taken from the
    embedding store, each built again (the way to force a rebuild, docs/rerun.md); True when
    unset or 1 (true, yes, on). Another value is an InputError naming the variable."""
    value = (os.environ if environ is None else environ).get(STORE_VARIABLE, "1")
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    if value.strip().lower() in ("1", "true", "yes", "on", ""):
        return True
    raise InputError(STORE_VARIABLE, None, f"{value!r} is not 0 or 1 (0: build again)")
