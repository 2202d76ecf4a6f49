"""The first prototype of ``isoflow.finetune.shared_kmers``: the reference
``bench/bench_shared_kmers.py`` times it against and checks the pairs of, kept as written but for
these imports and this docstring. Not used by the package.
Its cost: 31 passes hashing each k-mer a base at a time, and ``np.unique(..., axis=0)`` on
two-column rows (docs/benchmarks.md, "Groups sharing sequence")."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Groups sharing most of their sequence on either strand, lengths aside: a flipped or
# trimmed copy of one element in another group (Kircher's SORT1, 600 bp, and SORT1-flip,
# 601 bp reversed: measured effects of their shared SNVs correlate 0.80) escapes
# near_identical, which compares equal-length cassettes base by base. A warning, as that is.
SHARED_K = 31  # canonical k-mers of 62 bits
SHARED_SAMPLE = 8  # one k-mer in about 8 kept (by hash: the same ones in every cassette)
SHARED_MIN = 0.5  # share of the smaller group's own k-mers two groups have in common
SHARED_MIN_KMERS = 8  # sampled k-mers in common, at least
SHARED_MAX_GROUPS = 8  # a k-mer in more groups (or in over half of them) is a backbone
SHARED_CHUNK = 2000  # constructs hashed at once (bounds the memory)
_LOOKUP = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _LOOKUP[_b] = _i
    _LOOKUP[ord(chr(_b).lower())] = _i


def _sampled_kmers(seqs: Sequence[str], k: int = SHARED_K) -> tuple[np.ndarray, np.ndarray]:
    """``(kmers, construct)``: the distinct canonical (either strand) ``k``-mers of each of
    ``seqs`` without an ambiguous base, about one in ``SHARED_SAMPLE`` kept by a hash of the
    k-mer (the same k-mers kept in every sequence), with the position of its sequence.
    One vectorised pass over the sequences joined."""
    b = _LOOKUP[np.frombuffer("".join(seqs).encode("ascii", "replace"), dtype=np.uint8)]
    lengths = np.asarray([len(x) for x in seqs], dtype=np.int64)
    n = len(b) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(seqs)), lengths)[:n]
    ends = np.cumsum(lengths)
    bad = np.r_[0, np.cumsum(b == 4)]
    ok = (bad[k:] - bad[:n] == 0) & (np.arange(n) + k <= ends[owner])  # inside one sequence
    v = np.minimum(b, 3).astype(np.uint64)
    fwd = np.zeros(n, dtype=np.uint64)
    rev = np.zeros(n, dtype=np.uint64)
    two = np.uint64(2)
    for j in range(k):
        fwd <<= two
        fwd |= v[j : j + n]
        rev |= (np.uint64(3) - v[j : j + n]) << np.uint64(2 * j)
    canon = np.minimum(fwd, rev)
    ok &= (canon * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(61) == 0  # 1 in 8
    rows = np.unique(np.stack([owner[ok].astype(np.uint64), canon[ok]], 1), axis=0)
    return rows[:, 1], rows[:, 0].astype(np.int64)


@dataclass(frozen=True)
class SharedKmers:
    """What :func:`shared_kmers` found: ``pairs`` of groups ``(a, b, share)`` (share of the
    smaller group's own k-mers they have in common, highest first), ``seconds`` it took."""

    pairs: list[tuple[Any, Any, float]]
    seconds: float


def shared_kmers(seqs: Sequence[str], groups: Sequence[Any]) -> SharedKmers:
    """Pairs of groups whose own sequence (the sampled canonical k-mers in at least half
    of a group's constructs) is mostly the same, on either strand and whatever the lengths:
    at least ``SHARED_MIN`` of the smaller group's own k-mers that lie in at most two
    groups, and at least ``SHARED_MIN_KMERS`` of them. A k-mer in three or more groups (a
    reporter every construct carries) says nothing of a pair; so with fewer than three
    groups nothing is compared."""
    started = time.monotonic()
    groups = np.asarray(groups, dtype=object)
    labels = list(dict.fromkeys(groups.tolist()))
    if len(labels) < 3:
        return SharedKmers([], time.monotonic() - started)
    code = {g: i for i, g in enumerate(labels)}
    codes = np.asarray([code[g] for g in groups.tolist()], dtype=np.int64)
    size = np.bincount(codes, minlength=len(labels))
    parts = []
    for lo in range(0, len(seqs), SHARED_CHUNK):
        kmer, which = _sampled_kmers(seqs[lo : lo + SHARED_CHUNK])
        parts.append(np.stack([kmer, codes[lo + which].astype(np.uint64)], 1))
    # per (k-mer, group): in how many of the group's constructs; a group's own k-mers are
    # those in at least half of them
    rows, counts = np.unique(np.concatenate(parts), axis=0, return_counts=True)
    owner = rows[:, 1].astype(np.int64)
    own = counts * 2 >= size[owner]
    kmer, owner = rows[own, 0], owner[own]
    starts = np.flatnonzero(np.r_[True, kmer[1:] != kmer[:-1]])
    in_groups = np.diff(np.r_[starts, len(kmer)])
    most = min(SHARED_MAX_GROUPS, max(2, len(labels) // 2))  # more: a backbone
    per = np.repeat(in_groups, in_groups)
    total = np.bincount(owner[per <= most], minlength=len(labels))
    keys = []
    for m in range(2, most + 1):
        first = starts[in_groups == m]
        if not len(first):
            continue
        block = owner[first[:, None] + np.arange(m)]
        for i, j in itertools.combinations(range(m), 2):
            keys.append(block[:, i] * len(labels) + block[:, j])
    found = []
    if keys:
        key, common = np.unique(np.concatenate(keys), return_counts=True)
        for kk, c in zip(key.tolist(), common.tolist(), strict=True):
            i, j = divmod(kk, len(labels))
            share = c / max(1, min(total[i], total[j]))
            if c >= SHARED_MIN_KMERS and share >= SHARED_MIN:
                found.append((labels[i], labels[j], round(float(share), 3)))
    found.sort(key=lambda p: -p[2])
    return SharedKmers(found, time.monotonic() - started)
