"""Fine-tune a GTEx-trained model bundle on a construct measurement table: ``isoflow finetune``.

Start: ONE bundle (``isoflow.bundle.load_model``; for an ensemble, pick one member: the
baselines and the new bundle then refer to one network, not to a mean the head could not be
fitted to). Its head (one output per GTEx tissue) is replaced by a new linear head with one
output per measured column (:mod:`isoflow.measurements`); then, by ``mode``:

- ``frozen``: every modality's embeddings are computed once (``Model.embed``: the cached
  modalities' frozen encoders, and the encoders the network reads raw, all frozen); the
  aggregator and the new head train on them;
- ``finetune_last``: the last ``finetune_last`` blocks of each encoder the bundle reads raw
  train too (its inputs re-encoded every step); cached modalities stay frozen embeddings;
- ``lora``: LoRA adapters (:mod:`isoflow.model.lora`, peft) on each Nucleotide Transformer /
  ESM-2 encoder the bundle reads raw; only adapters, aggregator and head train.

Evaluation: grouped k-fold cross-validation (``sklearn.model_selection.GroupKFold``, shuffled
with the seed: a group is never split), inside each training part an inner validation share
of groups for early stopping. Identical constructs always share a group, and near-identical
ones in different groups are a warning (:func:`fold_groups`): a copy of a test construct in
training would score every method on its training data. Per fold and column: Spearman,
Pearson, R² of the held-out constructs for the fine-tuned model and, measured in the same
run on the same folds, the zero-shot score (the bundle's prediction for the column's mapped
tissue(s), or with ``references`` the ISM effect alt - ref), a ridge on k-mer counts of the
cassette, and a shuffled-label control (the same fine-tuning on permuted training labels).
The final bundle is fitted on every construct for the epoch count early stopping picked on
an inner share of all the groups (the manifest's ``finetune.final_fit`` records both). A
killed run continues from its finished folds (``.{out}.partial/``, keyed by a fingerprint
of the settings, the table and the bundle). docs/constructs.md ("Fine-tuning").
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import html
import json
import logging
import math
import os
import re
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isoflow.commands import (
    CONSTRUCT_FLAGS,
    DEVICE_HELP,
    MODEL_FLAGS,
    OUT_FLAGS,
    add_construct_arguments,
    blocks_or_all,
    construct_flags,
    fold_count,
    nonnegative_int,
    positive_int,
)
from isoflow.errors import InputError, did_you_mean
from isoflow.files import atomic_path, check_output_folder
from isoflow.workflow import FINETUNE_FILES

log = logging.getLogger("isoflow.finetune")

HELP = (
    "Fine-tune a model bundle on a construct measurement table (grouped k-fold CV against "
    "zero-shot, a k-mer ridge and a shuffled-label control); writes a new bundle and the CV "
    "metrics."
)
MODES = ("frozen", "finetune_last", "lora")
METHODS = ("finetune", "zero_shot", "zero_shot_calibrated", "kmer_ridge", "shuffled")
# computed inside each fold (and saved with it); zero_shot_calibrated is derived afterwards
FOLD_METHODS = ("finetune", "zero_shot", "kmer_ridge", "shuffled")
# the baselines fine-tuning must beat: the paired comparison's "best baseline" is the one of
# these with the higher mean Spearman (shuffled is a control, raw zero_shot the same ranking
# as its calibration up to sign)
BASELINES = ("zero_shot_calibrated", "kmer_ridge")
METRICS = ("spearman", "pearson", "r2")
# a test fold with fewer constructs gives an undefined or meaningless correlation: a warning
MIN_TEST_CONSTRUCTS = 3
FINETUNE_DEFAULTS: dict[str, Any] = {
    "mode": "frozen",
    "finetune_last": 1,  # mode finetune_last: blocks of each raw encoder that train
    "lora": {},  # mode lora: isoflow.model.lora.LORA_DEFAULTS over it
    "folds": 5,
    "inner_valid": 0.2,  # share of a training part's groups held out for early stopping
    "max_epochs": 100,
    "patience": 10,
    "batch_size": 8,
    "lr": 3e-3,
    "weight_decay": 0.01,
    "seed": 0,
    "kmer": 4,
    "ridge_alphas": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
    "shuffled_control": True,
    "zero_shot": {},  # column -> tissue, list of tissues or "mean" (default: same name, else mean)
}
# The result folder's files: the bundle folder and the CV files (one home, shared with the
# rule's outputs: isoflow.workflow, which the workflow reads at parse without this module)
OUTPUTS = FINETUNE_FILES


def finetune_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` over ``FINETUNE_DEFAULTS``, checked (one line for an unknown key or mode)."""
    out = copy.deepcopy(FINETUNE_DEFAULTS)
    for key, value in (settings or {}).items():
        if key not in out:
            raise InputError(None, f"finetune.{key}", f"unknown setting; keys: {sorted(out)}")
        out[key] = value
    if out["mode"] not in MODES:
        raise InputError(None, "finetune.mode", f"{out['mode']!r} is not one of {MODES}")
    if int(out["folds"]) < 2:
        raise InputError(None, "finetune.folds", "at least 2 folds")
    if not 0 < float(out["inner_valid"]) < 1:
        raise InputError(None, "finetune.inner_valid", "a share between 0 and 1")
    return out


# ---------------------------------------------------------------------------- folds


def grouped_folds(
    groups: Sequence[str], folds: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, test) index pairs from ``sklearn``'s GroupKFold (groups shuffled
    with ``seed``): every group's members lie on one side of every split."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups, dtype=object)
    n_groups = len(set(groups.tolist()))
    if n_groups < folds:
        raise InputError(None, "groups", f"{n_groups} group(s) for {folds} folds")
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    index = np.arange(len(groups))
    return [(tr, te) for tr, te in splitter.split(index, groups=groups)]


# Same-length cassettes this many mismatches apart or fewer are near-identical (a few point
# variants of one element, replicate rows of edited copies): a choice, not a measurement.
NEAR_MISMATCHES = 3
# The most base comparisons the near-identical check makes before it stops and says it
# checked part of the table: bounds its time (docs/benchmarks.md, "Near-identical
# constructs": the cost measured on tables of a few thousand constructs).
NEAR_MAX_COMPARED = 2_000_000_000
# Rows of other groups a cassette is compared with before the rest of its bucket: in a table
# of variants one of the first few is near, and the rest need not be read.
FIRST_CHUNK = 16


@dataclass(frozen=True)
class NearIdentical:
    """What :func:`near_identical` found: ``constructs`` (positions, sorted) that have a
    near-identical construct in another group, ``example`` one such pair ``(i, j,
    mismatches)`` or None, ``complete`` False when ``max_compared`` stopped the check,
    ``compared`` the base comparisons it made, ``checked`` the constructs whose check
    finished (found near another, or compared with every candidate, or none of their length
    to compare with) of ``total``: all of them when ``complete``."""

    constructs: list[int]
    example: tuple[int, int, int] | None
    complete: bool
    compared: int
    max_mismatches: int
    checked: int
    total: int


def near_covered(near: NearIdentical) -> str:
    """How much of the table a near-identical check that stopped covered, in words."""
    return (
        f"{near.checked:,} of {near.total:,} constructs checked, stopped after "
        f"{near.compared:,} base comparisons"
    )


def near_identical(
    seqs: Sequence[str],
    groups: Sequence[Any],
    max_mismatches: int = NEAR_MISMATCHES,
    max_compared: int = NEAR_MAX_COMPARED,
) -> NearIdentical:
    """Constructs whose sequence (``seqs``: the cassettes) has the same length as another
    construct's of another group and differs from it in at most ``max_mismatches`` bases.

    Per length, only the positions where the sequences differ are compared; a pair within
    ``max_mismatches`` agrees on at least one of ``max_mismatches + 1`` blocks of them
    (pigeonhole), so only sequences sharing a block (a bucket) are compared: a sequence not
    yet found near another with ``FIRST_CHUNK`` of its bucket's other groups' sequences,
    then, none near, with the whole bucket. Sequences of other lengths (an indel) are not
    compared. Stops after ``max_compared`` base comparisons (``complete`` False, ``checked``
    how many constructs were checked all the same)."""
    groups = np.asarray(groups, dtype=object)
    index: dict[Any, int] = {}
    codes = np.asarray([index.setdefault(g, len(index)) for g in groups.tolist()], dtype=np.int64)
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(seqs):
        by_length.setdefault(len(seq), []).append(i)
    found = np.zeros(len(seqs), dtype=bool)
    example: tuple[int, int, int] | None = None
    compared = 0
    # constructs checked: those with none of their length to compare with, then each length's
    # once all its blocks are read
    checked = sum(len(m) for length, m in by_length.items() if len(m) < 2 or length == 0)

    def result(complete: bool, current: Sequence[int] = ()) -> NearIdentical:
        done = len(seqs) if complete else checked + int(found[list(current)].sum())
        return NearIdentical(
            np.flatnonzero(found).tolist(),
            example,
            complete,
            compared,
            max_mismatches,
            done,
            len(seqs),
        )

    for length, members in by_length.items():
        if len(members) < 2 or length == 0:
            continue
        text = "".join(seqs[i] for i in members).encode("ascii", "replace")
        letters = np.frombuffer(text, dtype=np.uint8).reshape(len(members), length)
        letters = np.ascontiguousarray(letters[:, (letters != letters[0]).any(axis=0)])
        width = letters.shape[1]
        if width == 0:  # all the same sequence: one group already (merge_identical)
            checked += len(members)
            continue
        if width <= max_mismatches:  # every pair is near: one bucket
            blocks = [np.zeros(len(members), dtype=np.int8)]
        else:
            bounds = np.linspace(0, width, max_mismatches + 2).astype(int)
            blocks = [
                np.ascontiguousarray(letters[:, lo:hi]).view(np.dtype((np.void, hi - lo))).ravel()
                for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            ]
        for block in blocks:
            order = np.argsort(block, kind="stable")
            keys = block[order]
            rows = np.asarray(members)[order]  # table positions, in bucket order
            letters_by, code_by = letters[order], codes[rows]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            for start, end in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
                code = code_by[start:end]
                if (code == code[0]).all():
                    continue  # one construct, or one group: no pair to find
                bucket, here = letters_by[start:end], rows[start:end]
                for a in range(end - start):
                    if found[here[a]]:
                        continue
                    others = np.flatnonzero(code != code[a])
                    steps = [others[:FIRST_CHUNK]] + ([others] if len(others) > FIRST_CHUNK else [])
                    for chunk in steps:
                        whole = chunk is others and len(steps) > 1  # read the bucket as a view
                        cost = (end - start if whole else len(chunk)) * width
                        if compared + cost > max_compared:
                            return result(False, members)
                        compared += cost
                        if whole:
                            mismatches = (bucket != bucket[a]).sum(axis=1)[chunk]
                        else:
                            mismatches = (bucket[chunk] != bucket[a]).sum(axis=1)
                        hits = np.flatnonzero(mismatches <= max_mismatches)
                        if len(hits):
                            near = here[chunk[hits]]
                            found[here[a]] = True
                            found[near] = True
                            k = int(near.argmin())
                            pair = (*sorted((int(here[a]), int(near[k]))), int(mismatches[hits[k]]))
                            if example is None or pair[:2] < example[:2]:
                                example = pair  # the first pair in table order found
                            break
        checked += len(members)
    return result(True)


# Groups sharing most of their own sequence on either strand, lengths aside: the same element
# flipped or trimmed in another group (Kircher et al.'s SORT1, 600 bp, and SORT1-flip, 601 bp
# reversed, whose 1,781 shared SNVs' effects correlate: Spearman 0.80) escapes near_identical,
# which compares equal-length cassettes base by base. Choices, not measurements:
SHARED_K = 31  # canonical k-mers (either strand) of 62 bits; the hashing is written for 31
SHARED_SAMPLE_BITS = 3  # one k-mer in 2**3 kept, by a hash: the same ones in every cassette
SHARED_MIN = 0.5  # share of the smaller group's own k-mers two groups have in common
SHARED_MIN_KMERS = 8  # sampled k-mers in common, at least
SHARED_MAX_GROUPS = 8  # a k-mer in more (or in more than max(2, groups // 2)): backbone
SHARED_EXAMPLES = 3  # pairs named in the warning and recorded
SHARED_BLOCK = 1 << 15  # bases hashed at once (cache-sized pieces; docs/benchmarks.md)
_SHARED_HASH = np.uint64(0x9E3779B97F4A7C15)
# ACGT (either case) -> 0..3, anything else -> 4 (not a base: no k-mer holds it)
_SHARED_CODES = bytes(
    "ACGTacgt".find(chr(c)) % 4 if chr(c) in "ACGTacgt" else 4 for c in range(256)
)


def _hash_block(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sampled 31-mers starting at ``0 .. len(b) - 32`` of ``b`` (codes 0..3; other
    values read as 0: the caller drops k-mers over them): ``(hash, start)``, the hash of the
    canonical k-mer (min of both strands' 62-bit codes) times an odd constant, so one-to-one,
    kept where its top ``SHARED_SAMPLE_BITS`` bits are 0. Codes are built by doubling in
    small integer types; the 31-mer is a 16-mer and the next 16-mer less its last base, so
    ``b`` holds one base past the last k-mer."""
    u64 = np.uint64
    n = len(b) - SHARED_K - 1
    v = np.minimum(b, 3)
    r = 3 - v  # the complement
    f2, r2 = (v[:-1] << 2) | v[1:], r[:-1] | (r[1:] << 2)
    f4, r4 = (f2[:-2] << 4) | f2[2:], r2[:-2] | (r2[2:] << 4)
    f8 = (f4[:-4].astype(np.uint16) << 8) | f4[4:]
    r8 = r4[:-4].astype(np.uint16) | (r4[4:].astype(np.uint16) << 8)
    f16 = ((f8[:-8].astype(np.uint32) << 16) | f8[8:]).astype(u64)  # bases i..i+15
    r16 = (r8[:-8].astype(np.uint32) | (r8[8:].astype(np.uint32) << 16)).astype(u64)
    fwd = f16[:n] << u64(30)
    fwd |= f16[16 : 16 + n] >> u64(2)  # bases i+16..i+30
    rev = r16[16 : 16 + n] & u64((1 << 30) - 1)
    rev <<= u64(32)
    rev |= r16[:n]
    np.minimum(fwd, rev, out=fwd)
    fwd *= _SHARED_HASH
    keep = np.flatnonzero(fwd < u64(1 << (64 - SHARED_SAMPLE_BITS)))
    return fwd[keep], keep


def _sampled_kmers(seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(hash, construct)``: every sampled canonical ``SHARED_K``-mer of each of ``seqs``
    without a base other than ACGT (either case), with the position of its sequence (a
    k-mer twice in a sequence is there twice). One pass over the sequences joined by N, a
    block at a time (the N between two sequences drops the k-mers across them)."""
    text = ("N".join(seqs) + "N").encode("ascii", "replace").translate(_SHARED_CODES)
    b = np.frombuffer(text, dtype=np.uint8)
    first = np.cumsum([0] + [len(x) + 1 for x in seqs])  # where each sequence starts
    hashes, owners = [], []
    for lo in range(0, max(0, len(b) - SHARED_K), SHARED_BLOCK):
        piece = b[lo : lo + SHARED_BLOCK + SHARED_K + 1]
        h, at = _hash_block(piece)
        bad = np.flatnonzero(piece == 4)
        if len(bad):  # a k-mer over a non-base: the next one at or after its start is in it
            nxt = np.searchsorted(bad, at)
            clean = np.r_[bad, len(piece) + SHARED_K][nxt] >= at + SHARED_K
            h, at = h[clean], at[clean]
        hashes.append(h)
        owners.append(np.searchsorted(first, at + lo, side="right") - 1)
    if not hashes:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate(hashes), np.concatenate(owners)


@dataclass(frozen=True)
class SharedKmers:
    """What :func:`shared_kmers` found: ``pairs`` of groups ``(a, b, share)``, ``share``
    the part of the smaller group's own k-mers they have in common (3 decimals), highest
    first (then by the groups' first rows); ``most`` the groups a k-mer may be in and still
    count (more: shared backbone)."""

    pairs: list[tuple[Any, Any, float]]
    most: int


def shared_kmers(seqs: Sequence[str], groups: Sequence[Any]) -> SharedKmers:
    """Pairs of groups whose own sequence is mostly the same, on either strand and whatever
    the lengths (a flipped, trimmed or extended copy of one element in two groups).

    A group's own k-mers: the sampled canonical ``SHARED_K``-mers (one in
    ``2**SHARED_SAMPLE_BITS``, chosen by a hash, so the same k-mers in every sequence) in at
    least half of its constructs. A k-mer owned by more than ``most`` = min(
    ``SHARED_MAX_GROUPS``, max(2, groups // 2)) groups is shared backbone (a reporter every
    construct carries) and counts for none. Two groups are a pair when they own at least
    ``SHARED_MIN_KMERS`` counted k-mers in common and these are at least ``SHARED_MIN`` of
    the smaller group's counted k-mers. Fewer than 3 groups: nothing compared. The
    sequence every construct begins or ends with is hashed once, not per construct (its
    k-mers are in every group); (k-mer, construct) pairs are made distinct by one stable
    sort of construct-major keys and counted per group by hashing: 0.39-0.89 CPU-s on
    39,170 cassettes of ~1.0 kb (docs/benchmarks.md, "Groups sharing sequence")."""
    groups = np.asarray(groups, dtype=object)
    labels = list(dict.fromkeys(groups.tolist()))
    most = min(SHARED_MAX_GROUPS, max(2, len(labels) // 2))
    if len(labels) < 3:
        return SharedKmers([], most)
    index = {g: i for i, g in enumerate(labels)}
    codes = np.asarray([index[g] for g in groups.tolist()], dtype=np.int64)
    size = np.bincount(codes, minlength=len(labels))
    # a k-mer in every construct is owned by every group, more than `most`: it counts for
    # none, so the k-mers wholly inside the sequence all constructs begin or end with (the
    # backbone) are not hashed in each of them, and dropped where they occur elsewhere
    seqs = list(seqs)
    head = len(os.path.commonprefix(seqs))
    tail = len(os.path.commonprefix([s[::-1] for s in seqs]))
    cut = max(0, head - SHARED_K + 1), max(0, tail - SHARED_K + 1)
    backbone = [seqs[0][:head], seqs[0][len(seqs[0]) - tail :]]
    hashes, owner = _sampled_kmers([s[cut[0] : len(s) - cut[1]] for s in seqs])
    if not len(hashes):  # every sequence shorter than SHARED_K, or not ACGT
        return SharedKmers([], most)
    kmer, hashed = pd.factorize(hashes)
    everywhere = np.isin(hashed, _sampled_kmers(backbone)[0])
    if everywhere.any():
        kept = ~everywhere[kmer]
        kmer, owner = kmer[kept], owner[kept]
        if not len(kmer):  # constructs differing only in a repeat's count: all backbone
            return SharedKmers([], most)
    # (k-mer, construct) once each: the pairs come construct by construct, so a stable
    # sort (merging runs) of construct-major keys is cheap; then per (k-mer, group) the
    # constructs holding it
    kmer_bits, group_bits = (len(hashed) - 1).bit_length(), (len(labels) - 1).bit_length()
    key = owner.astype(np.int64) << kmer_bits
    key |= kmer
    key.sort(kind="stable")
    key = key[np.r_[True, key[1:] != key[:-1]]]
    kmer_group = (key & ((1 << kmer_bits) - 1)) << group_bits
    kmer_group |= codes[key >> kmer_bits]
    pair_id, kmer_groups = pd.factorize(kmer_group)
    constructs = np.bincount(pair_id, minlength=len(kmer_groups))
    # a group's own k-mers, few: sorted by k-mer, then group
    group = kmer_groups & ((1 << group_bits) - 1)
    own = np.sort(kmer_groups[constructs * 2 >= size[group]])
    kmer, group = own >> group_bits, own & ((1 << group_bits) - 1)
    starts = np.flatnonzero(np.r_[True, kmer[1:] != kmer[:-1]])
    owners = np.diff(np.r_[starts, len(kmer)])
    counted = np.repeat(owners, owners) <= most
    total = np.bincount(group[counted], minlength=len(labels))
    keys = []
    for m in range(2, most + 1):
        first = starts[owners == m]
        if len(first):
            block = group[first[:, None] + np.arange(m)]  # ascending codes
            for i in range(m):
                for j in range(i + 1, m):
                    keys.append(block[:, i] * len(labels) + block[:, j])
    found = []
    if keys:
        pair, common = np.unique(np.concatenate(keys), return_counts=True)
        for p, c in zip(pair.tolist(), common.tolist(), strict=True):
            i, j = divmod(p, len(labels))
            share = c / max(1, min(total[i], total[j]))
            if c >= SHARED_MIN_KMERS and share >= SHARED_MIN:
                found.append((labels[i], labels[j], round(float(share), 3)))
    found.sort(key=lambda p: -p[2])  # stable: ties in the groups' table order
    return SharedKmers(found, most)


def near_identical_pairs(
    seqs: Sequence[str],
    groups: Sequence[Any],
    pairs: Sequence[tuple[Any, Any, float]],
    constructs: Sequence[int],
    max_mismatches: int = NEAR_MISMATCHES,
    max_compared: int = NEAR_MAX_COMPARED,
) -> set[tuple[Any, Any]]:
    """Of ``pairs`` of groups (:func:`shared_kmers`), those with a construct of one
    near-identical to one of the other (the same length, at most ``max_mismatches``
    mismatches), looked for among ``constructs`` (:func:`near_identical` found them): the
    pairs the near-identical warning already stands for. A pair whose check would pass
    ``max_compared`` base comparisons in all is not among them (not known)."""
    groups = np.asarray(groups, dtype=object)
    flagged = np.asarray(sorted(constructs), dtype=np.int64)
    members: dict[Any, list[int]] = {}
    for i in flagged.tolist():
        members.setdefault(groups[i], []).append(i)
    found, compared = set(), 0
    for a, b, _ in pairs:
        by_length: dict[int, list[int]] = {}
        for j in members.get(b, []):
            by_length.setdefault(len(seqs[j]), []).append(j)
        others = {
            n: np.frombuffer("".join(seqs[j] for j in js).encode(), dtype=np.uint8).reshape(
                len(js), n
            )
            for n, js in by_length.items()
        }
        for i in members.get(a, []):
            other = others.get(len(seqs[i]))
            if other is None:
                continue
            compared += other.size
            if compared > max_compared:
                return found
            mine = np.frombuffer(seqs[i].encode(), dtype=np.uint8)
            if ((other != mine).sum(axis=1) <= max_mismatches).any():
                found.add((a, b))
                break
    return found


def merge_identical(
    groups: Sequence[Any], keys: Sequence[Sequence[Any]]
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``groups`` with the groups of identical constructs merged: two constructs with the
    same key in any of ``keys`` (each a sequence of per-construct keys: the cassette, the
    model inputs) always share a group. A merged group takes the label of its first
    construct (table order). Returns the labels and the pairs ``(i, j)`` (``i`` the first
    construct with that key, ``j`` a later one of another group) that merged groups."""
    groups = np.asarray(groups, dtype=object)
    parent: dict[Any, Any] = {}

    def root(label):
        while parent.get(label, label) != label:
            label = parent[label]
        return label

    first_of: dict[Any, int] = {}
    for i, label in enumerate(groups.tolist()):
        first_of.setdefault(label, i)
    pairs = []
    for column in keys:
        seen: dict[Any, int] = {}
        for j, key in enumerate(column):
            i = seen.setdefault(key, j)
            a, b = root(groups[i]), root(groups[j])
            if a == b:
                continue
            pairs.append((i, j))
            if first_of[a] > first_of[b]:
                a, b = b, a
            parent[b] = a  # the earlier group's label
    merged = np.asarray([root(label) for label in groups.tolist()], dtype=object)
    return merged, pairs


def _input_key(item: Any) -> tuple[bytes, ...]:
    """What the model reads of one construct: its DNA window, RNA and protein."""
    out = []
    for modality in ("dna", "rna", "protein"):
        seq = getattr(item, modality, None)
        out.append(seq.tobytes() if isinstance(seq, np.ndarray) else str(seq or "").encode())
    return tuple(out)


def fold_groups(
    ids: Sequence[str],
    groups: Sequence[Any],
    seqs: Sequence[str],
    inputs: Sequence[Any],
    *,
    by: str = "given",
    where: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The groups the folds keep whole, and the manifest's record of them.

    Constructs that are identical (the same cassette ``seqs``, or the same model inputs:
    DNA window, RNA, protein) share a group whatever ``groups`` says (:func:`merge_identical`,
    a warning with the count); constructs near-identical to one of another group
    (:func:`near_identical`) are a warning naming a pair and the fix (a ``group`` column, or
    one group for them); groups sharing most of their own sequence on either strand, whatever
    the lengths (:func:`shared_kmers`), are a warning naming pairs and their shared part, but
    for pairs holding near-identical constructs (:func:`near_identical_pairs`): the warning
    before stands for those, and no pair is named twice.
    ``by``: where ``groups`` came from (recorded); ``where``: the table, for the messages."""
    groups = np.asarray(groups, dtype=object)
    given = len(set(groups.tolist()))
    keys = [list(seqs), [_input_key(x) for x in inputs]]
    merged, pairs = merge_identical(groups, keys)
    n_groups = len(set(merged.tolist()))
    shared = np.zeros(len(groups), dtype=bool)  # identical to a construct of another group
    for column in keys:
        owners: dict[Any, set] = {}
        for key, label in zip(column, groups.tolist(), strict=True):
            owners.setdefault(key, set()).add(label)
        shared |= np.asarray([len(owners[key]) > 1 for key in column], dtype=bool)
    prefix = f"{where}: " if where is not None else ""
    fix = (
        "add a group column (e.g. the element each variant derives from)"
        if by == "construct id"
        else "put such constructs in one group"
    )
    if pairs:
        i, j = pairs[0]
        log.warning(
            "%s%d construct(s) are identical to a construct of another group (the same "
            "cassette or the same model inputs; e.g. %s and %s): their groups are merged, %d "
            "groups -> %d, so no fold tests a construct that it also trains on",
            prefix,
            int(shared.sum()),
            ids[i],
            ids[j],
            given,
            n_groups,
        )
    near = near_identical(seqs, merged, NEAR_MISMATCHES, NEAR_MAX_COMPARED)
    if near.example is not None:
        i, j, mismatches = near.example
        log.warning(
            "%s%d construct(s) have a near-identical construct in another group (the same "
            "length, at most %d mismatches), e.g. %s and %s (%d mismatch(es)): a fold that "
            "trains on one and tests the other inflates every method's score; %s%s",
            prefix,
            len(near.constructs),
            near.max_mismatches,
            ids[i],
            ids[j],
            mismatches,
            fix,
            ""
            if near.complete
            else f" (the check covered part of the table: {near_covered(near)})",
        )
    elif not near.complete:
        log.warning(
            "%sthe near-identical check covered part of the table, none found so far: %s",
            prefix,
            near_covered(near),
        )
    alike = shared_kmers(seqs, merged)
    # pairs holding near-identical constructs are the near-identical warning's: named once
    named = near_identical_pairs(seqs, merged, alike.pairs, near.constructs)
    others = [p for p in alike.pairs if p[:2] not in named]
    if others:
        log.warning(
            "%s%d pair(s) of groups share most of their own sequence (sampled %d-mers, either "
            "strand, any length: variants of one element, or one element flipped, trimmed or "
            "extended)%s, e.g. %s: a fold that trains on one and tests the other inflates "
            "every method's score; %s",
            prefix,
            len(others),
            SHARED_K,
            f" besides {len(named)} with near-identical constructs (above)" if named else "",
            ", ".join(
                f"{a} and {b} ({share:.0%} shared)" for a, b, share in others[:SHARED_EXAMPLES]
            ),
            fix,
        )
    log.info("folds grouped by %s: %d constructs in %d groups", by, len(ids), n_groups)
    record = {
        "by": by,
        "groups_given": given,
        "groups": n_groups,
        "identical": {
            "constructs": int(shared.sum()),
            "example": [ids[pairs[0][0]], ids[pairs[0][1]]] if pairs else None,
        },
        "near_identical": {
            "max_mismatches": near.max_mismatches,
            "constructs": len(near.constructs),
            "example": None
            if near.example is None
            else [ids[near.example[0]], ids[near.example[1]], near.example[2]],
            "complete": near.complete,
            "checked": near.checked,
            "total": near.total,
        },
        "shared_kmers": {
            "k": SHARED_K,
            "min_share": SHARED_MIN,
            "max_groups": alike.most,
            "pairs": len(alike.pairs),
            "near_identical_pairs": len(named),
            "examples": [list(p) for p in others[:SHARED_EXAMPLES]],
        },
    }
    return merged, record


def warn_small_folds(folds, groups: Sequence[Any], where: Any = None) -> list[int]:
    """A warning (one line naming its groups) for each fold that tests fewer than
    ``MIN_TEST_CONSTRUCTS`` constructs: its metrics are undefined or noise, and the summary's
    means leave an undefined one out. Returns those folds (1-based)."""
    groups = np.asarray(groups, dtype=object)
    small = []
    for k, (_, test) in enumerate(folds):
        if len(test) < MIN_TEST_CONSTRUCTS:
            small.append(k + 1)
            log.warning(
                "%sfold %d tests %d construct(s) (group(s) %s): its Spearman, Pearson and R² "
                "are undefined or noise (left out of the means when undefined: summary.tsv's "
                "*_folds); lower finetune.folds or merge small groups",
                f"{where}: " if where else "",
                k + 1,
                len(test),
                ", ".join(map(str, dict.fromkeys(groups[test].tolist()))),
            )
    return small


def check_folds_vary(
    values: np.ndarray, columns: Sequence[str], folds, where: Any = None
) -> list[int]:
    """Per column, the test folds whose values vary (a fold's Spearman, Pearson and R² are
    defined only there). Fewer than 2 is an error naming the column: its "cross-validated"
    mean would be one fold's number, or none (e.g. the only constructs off its common value
    in one group, or two such groups in one fold); fewer than all folds a warning."""
    varying = []
    for j, column in enumerate(columns):
        n = sum(int(np.ptp(values[test, j]) > 0) for _, test in folds)
        varying.append(n)
        if n < 2:
            raise InputError(
                where,
                None,
                f"{column}: its values vary within {n} of {len(folds)} test folds (every "
                "other fold holds one value), so cross-validation ranks it in at most one "
                "fold: add constructs whose values differ in other groups, or leave the "
                "column out (--columns)",
            )
        if n < len(folds):
            log.warning(
                "%s%s: its values vary within %d of %d test folds: its Spearman, Pearson "
                "and R² are means over those %d (summary.tsv's *_folds)",
                f"{where}: " if where else "",
                column,
                n,
                len(folds),
                n,
            )
    return varying


def check_targets(
    values: np.ndarray, ids: Sequence[str], columns: Sequence[str], where: Any = None
) -> None:
    """Each column standardised (as :meth:`Tuner.fit` does on a training part, here on
    every construct) must be finite in float32, the training's precision: a value such as
    1e300 (a library caller; the table reader refuses it) made every target inf or NaN and
    ended, after every embedding, as "no epoch gave a finite inner-validation MSE; lower
    finetune.lr". One line naming the construct and column."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mean = values.mean(axis=0)
        sd = values.std(axis=0)
        standard = ((values - mean) / np.where(sd == 0, 1.0, sd)).astype(np.float32)
        scale = np.c_[mean, sd].astype(np.float32)
    for j, column in enumerate(columns):
        bad = np.flatnonzero(~np.isfinite(standard[:, j]))
        if bad.size or not np.isfinite(scale[j]).all():
            i = int(bad[0]) if bad.size else int(np.argmax(np.abs(values[:, j])))
            raise InputError(
                where,
                None,
                f"construct {ids[i]!r}: {column} {values[i, j]:g} cannot be standardised in "
                f"float32, in which fine-tuning trains (the column's mean {mean[j]:g}, sd "
                f"{sd[j]:g}); correct the value, or log-transform the column if it is linear",
            )


def undefined_fold_notes(summary: pd.DataFrame) -> list[str]:
    """One sentence per column whose fine-tuning metrics are defined in fewer folds than
    were run (``{metric}_folds`` < ``folds``, :func:`summarize`): its means are not over
    every fold. For the log and cv.html."""
    notes = []
    names = {"spearman": "Spearman", "pearson": "Pearson", "r2": "R²"}
    for row in summary[summary["method"] == "finetune"].itertuples():
        short = {
            metric: int(getattr(row, f"{metric}_folds"))
            for metric in METRICS
            if int(getattr(row, f"{metric}_folds")) < int(row.folds)
        }
        if short:
            notes.append(
                f"{row.column}: "
                + ", ".join(
                    f"{names[m]} defined in {n} of {row.folds} folds" for m, n in short.items()
                )
                + " (a test fold with one value, or under 2 constructs, ranks nothing): "
                "its means are over those folds only"
            )
    return notes


def inner_split(groups: Sequence[str], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``groups``) of the inner training and validation parts: ``share`` of
    the groups (at least one, one left to train) held out whole, drawn with ``seed``."""
    groups = np.asarray(groups, dtype=object)
    labels = sorted(set(groups.tolist()))
    if len(labels) < 2:
        raise InputError(None, "groups", "a training part needs two groups for early stopping")
    rng = np.random.default_rng(seed)
    n_valid = min(max(1, round(share * len(labels))), len(labels) - 1)
    held = set(rng.choice(np.asarray(labels, dtype=object), n_valid, replace=False).tolist())
    valid = np.asarray([g in held for g in groups])
    return np.flatnonzero(~valid), np.flatnonzero(valid)


# ---------------------------------------------------------------------------- k-mer ridge


def kmer_counts(seqs: Sequence[str], k: int) -> np.ndarray:
    """``(n, 4**k)`` float64 counts of every k-mer over ACGT (windows with N skipped)."""
    code = np.full(256, -1, dtype=np.int64)
    for i, base in enumerate(b"ACGT"):
        code[base] = i
    out = np.zeros((len(seqs), 4**k), dtype=np.float64)
    for row, seq in enumerate(seqs):
        digits = code[np.frombuffer(seq.upper().encode("ascii"), dtype=np.uint8)]
        if len(digits) < k:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(digits, k)
        ok = (windows >= 0).all(axis=1)
        index = windows[ok] @ (4 ** np.arange(k - 1, -1, -1))
        out[row] = np.bincount(index, minlength=4**k)
    return out


def ridge_predict(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    inner: tuple[np.ndarray, np.ndarray],
    alphas: Sequence[float],
) -> np.ndarray:
    """Ridge on standardised ``x`` (fitted on ``train``), alpha per column chosen on the
    inner validation part (positions into ``train``), refitted on all of ``train``;
    predictions for ``test``."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    fit, valid = train[inner[0]], train[inner[1]]
    out = np.zeros((len(test), y.shape[1]))
    for j in range(y.shape[1]):
        best, best_alpha = np.inf, alphas[0]
        scaler = StandardScaler().fit(x[fit])
        for alpha in alphas:
            model = Ridge(alpha=alpha).fit(scaler.transform(x[fit]), y[fit, j])
            err = float(np.mean((model.predict(scaler.transform(x[valid])) - y[valid, j]) ** 2))
            if err < best:
                best, best_alpha = err, alpha
        scaler = StandardScaler().fit(x[train])
        model = Ridge(alpha=best_alpha).fit(scaler.transform(x[train]), y[train, j])
        out[:, j] = model.predict(scaler.transform(x[test]))
    return out


# ---------------------------------------------------------------------------- zero-shot


def zero_shot_sources(
    columns: Sequence[str], tissues: Sequence[str], mapping: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Column -> ``{"tissues": [...], "from": how}``: the bundle tissues whose mean
    prediction is its zero-shot score and why (the manifest's ``finetune.zero_shot_tissues``,
    cv.html's sentence): the ``mapping`` entry (a tissue, a list, or ``"mean"`` for all;
    ``from`` "finetune.zero_shot"), else the tissue of the same name ("same name"), else the
    one tissue of that name in another case ("same name, other case": ``liver`` is
    ``Liver``), else all tissues ("mean: no tissue of that name", or "mean: several tissues
    of that name in other cases")."""
    mapping = dict(mapping or {})
    unknown = set(mapping) - set(columns)
    if unknown:
        raise InputError(None, "finetune.zero_shot", f"{sorted(unknown)} are not measured columns")
    out = {}
    for column in columns:
        entry = mapping.get(column)
        how = "finetune.zero_shot"
        if entry is None:
            folded = [t for t in tissues if t.lower() == column.lower()]
            if column in tissues:
                entry, how = column, "same name"
            elif len(folded) == 1:
                entry, how = folded[0], "same name, other case"
            else:
                entry = "mean"
                how = (
                    "mean: several tissues of that name in other cases"
                    if folded
                    else "mean: no tissue of that name"
                )
        chosen = list(tissues) if entry == "mean" else [entry] if isinstance(entry, str) else entry
        missing = [t for t in chosen if t not in tissues]
        if missing:
            if len(missing) == 1:
                what = f"{missing[0]!r} is not a tissue of the bundle"
                what += did_you_mean(missing[0], tissues)
            else:
                named = ", ".join(f"{t!r}{did_you_mean(t, tissues)}" for t in missing)
                what = f"{named} are not tissues of the bundle"
            raise InputError(None, f"finetune.zero_shot.{column}", what)
        out[column] = {"tissues": list(chosen), "from": how}
    return out


def column_tissues(
    columns: Sequence[str], tissues: Sequence[str], mapping: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """Column -> the bundle tissues whose mean prediction is its zero-shot score
    (:func:`zero_shot_sources`)."""
    return {c: v["tissues"] for c, v in zero_shot_sources(columns, tissues, mapping).items()}


def zero_shot_note(sources: Mapping[str, Mapping[str, Any]], n_tissues: int) -> str:
    """One sentence on each column's zero-shot tissues (:func:`zero_shot_sources`)."""
    parts = []
    for column, source in sources.items():
        how = source["from"]
        if how.startswith("mean"):
            what = f"the mean over all {n_tissues} tissues ({how[len('mean: ') :]})"
        elif len(source["tissues"]) == n_tissues and n_tissues > 1:
            what = f"the mean over all {n_tissues} tissues ({how})"
        else:
            what = f"{', '.join(source['tissues'])} ({how})"
        parts.append(f"{column}: {what}")
    return "zero_shot per column: " + "; ".join(parts) + "."


def zero_shot(
    base_predictions: np.ndarray,
    tissues: Sequence[str],
    columns: Sequence[str],
    mapping: Mapping[str, Any] | None = None,
    reference_predictions: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, n_columns)`` zero-shot scores from the bundle's ``(n, n_tissues)`` predictions:
    the mean over each column's tissues (:func:`column_tissues`); with
    ``reference_predictions`` (each construct's reference, same shape) the effect alt - ref."""
    chosen = column_tissues(columns, tissues, mapping)
    preds = np.asarray(base_predictions, dtype=np.float64)
    if reference_predictions is not None:
        preds = preds - np.asarray(reference_predictions, dtype=np.float64)
    index = {t: i for i, t in enumerate(tissues)}
    return np.stack([preds[:, [index[t] for t in chosen[c]]].mean(axis=1) for c in columns], 1)


def calibrate(scores: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Calibrated zero-shot: per column, a least-squares line ``y = a + b * score`` fitted on
    rows ``train``, applied to rows ``test`` (a constant score on ``train``: its mean). The
    raw score is in log(1 + TPM) (or alt - ref), not the table's units; this puts it in them
    with what the training part says, the fair un-fine-tuned reference for R²."""
    out = np.zeros((len(test), y.shape[1]))
    for j in range(y.shape[1]):
        x, t = scores[train, j], y[train, j]
        var = float(np.var(x))
        slope = float(np.mean((x - x.mean()) * (t - t.mean())) / var) if var > 0 else 0.0
        out[:, j] = t.mean() + slope * (scores[test, j] - x.mean())
    return out


# ---------------------------------------------------------------------------- the tuner

# A fit whose mean training MSE over an epoch (targets standardised on the training rows, so
# predicting their mean gives 1, a fresh head about that) is above this, or not finite, has
# diverged: an InputError naming finetune.lr, never a bundle or metrics from it. A sane run's
# epochs stay near or below 1; 10^4 leaves four orders of magnitude before it trips.
EXPLODE_MSE = 1e4


def _embed_distinct(model, inputs: Sequence[Any], modality: str) -> list:
    """``model.embed`` of one modality, each distinct sequence encoded once (constructs
    that share a reporter share its RNA and protein)."""
    first: dict[Any, int] = {}
    keys = []
    for i, item in enumerate(inputs):
        seq = model._sequence(item, modality)
        key = seq.tobytes() if isinstance(seq, np.ndarray) else seq
        keys.append(key)
        first.setdefault(key, i)
    order = list(first.values())
    rows = model.embed([inputs[i] for i in order], [modality])[modality]
    by_key = {keys[i]: row for i, row in zip(order, rows, strict=True)}
    return [by_key[k] for k in keys]


class Tuner:
    """The bundle's network with a new head, trained on fixed inputs.

    ``model``: a loaded bundle; ``inputs``: the constructs as model inputs; ``n_columns``;
    ``settings``: :func:`finetune_settings`. Embeddings of what stays frozen are computed
    once here."""

    def __init__(self, model, inputs: Sequence[Any], n_columns: int, settings: dict):
        import torch

        from isoflow.bundle import _padded

        self.model = model
        self.settings = settings
        self.n_columns = n_columns
        self.device = model.device
        self.mode = settings["mode"]
        raw = list(model.network.encoders.keys())
        self.trained_raw: list[str] = []
        if self.mode != "frozen":
            self.trained_raw = self._trainable_raw(raw)
        frozen = [m for m in model.modalities if m not in self.trained_raw]
        self.embedded = {m: _embed_distinct(model, inputs, m) for m in frozen}
        self.fixed = {m: _padded(self.embedded[m], torch.device("cpu")) for m in frozen}
        self.raw_seqs = {m: [model._sequence(item, m) for item in inputs] for m in self.trained_raw}

    def _trainable_raw(self, raw: list[str]) -> list[str]:
        network = self.model.network
        if self.mode == "lora":
            from isoflow.model.lora import DEFAULT_TARGETS

            chosen = [m for m in raw if type(network.encoders[m]).__name__ in DEFAULT_TARGETS]
            what = "a Nucleotide Transformer or ESM-2 encoder read raw"
        else:
            chosen = raw
            what = "an encoder read raw (not through the embedding cache)"
        if not chosen:
            raise InputError(
                self.model.path,
                "encoders",
                f"mode {self.mode} needs {what}; this bundle reads "
                + ", ".join(f"{m}: {e['mode']}" for m, e in self.model.card["encoders"].items())
                + " (use mode frozen, or a bundle trained without caching that modality)",
            )
        return chosen

    def new_network(self, seed: int):
        """A copy of the bundle's network with a fresh head and the mode's trainable parts."""
        import torch

        torch.manual_seed(seed)
        network = copy.deepcopy(self.model.network).cpu()
        d_model = network.head.in_features
        network.head = torch.nn.Linear(d_model, self.n_columns)
        for modality, encoder in network.encoders.items():
            encoder.trainable_last(0)
            if modality not in self.trained_raw:
                continue
            if self.mode == "finetune_last":
                encoder.trainable_last(int(self.settings["finetune_last"]))
            elif self.mode == "lora":
                from isoflow.model.lora import add_lora, lora_settings

                torch.manual_seed(seed)
                add_lora(encoder, **lora_settings(self.settings["lora"]))
        return network.to(self.device)

    def _batch(self, network, index: np.ndarray) -> dict:
        out = {}
        for modality, (emb, mask) in self.fixed.items():
            out[modality] = (emb[index].to(self.device), mask[index].to(self.device))
        for modality in self.trained_raw:
            seqs = [self.raw_seqs[modality][i] for i in index]
            tokens = network.encoders[modality].tokenize(seqs)
            out[modality] = {k: v.to(self.device) for k, v in tokens.items()}
        return out

    def predict(self, network, index: np.ndarray) -> np.ndarray:
        import torch

        network.eval()
        out = []
        size = int(self.settings["batch_size"])
        with torch.no_grad():
            for start in range(0, len(index), size):
                batch = index[start : start + size]
                out.append(network(self._batch(network, batch)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_columns))

    def fit(
        self,
        y: np.ndarray,
        train: np.ndarray,
        valid: np.ndarray,
        seed: int,
        label: str = "",
        epochs: int | None = None,
    ):
        """Train on rows ``train`` of ``y`` (columns standardised on them). Without
        ``epochs``: early-stopped on the MSE of rows ``valid``, the best epoch's network
        kept; with ``epochs``: exactly that many epochs, the last kept (``valid`` unused, may
        be empty: the final refit on every construct). Returns the network, its head mapping
        back to the measured units, and its epoch count (the best epoch, or ``epochs``)."""
        import torch

        s = self.settings
        if epochs is not None and int(epochs) < 1:
            raise ValueError(f"epochs must be at least 1, not {epochs}")
        mean = y[train].mean(axis=0)
        sd = y[train].std(axis=0)
        sd[sd == 0] = 1.0
        target = torch.tensor((y - mean) / sd, dtype=torch.float32)
        network = self.new_network(seed)
        params = [p for p in network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=float(s["lr"]), weight_decay=float(s["weight_decay"])
        )
        rng = np.random.default_rng(seed)
        size = int(s["batch_size"])
        fixed = epochs is not None
        best, best_state, stale, ran, best_epoch = np.inf, None, 0, 0, 0
        for _ in range(int(epochs) if fixed else int(s["max_epochs"])):
            ran += 1
            network.train()
            order = rng.permutation(train)
            total = 0.0
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                optimizer.zero_grad()
                predicted = network(self._batch(network, batch)).float()
                loss = torch.nn.functional.mse_loss(predicted, target[batch].to(self.device))
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            train_mse = total / max(1, len(order))
            if not train_mse <= EXPLODE_MSE:  # NaN, inf or exploded
                raise InputError(
                    None,
                    "finetune.lr",
                    f"{label}: training diverged (epoch {ran}: mean training MSE "
                    f"{train_mse:.3g} on standardised values, above {EXPLODE_MSE:g}, where "
                    f"predicting the mean gives 1) at lr {float(s['lr']):g}; lower finetune.lr",
                )
            if fixed:
                continue
            val = float(np.mean((self.predict(network, valid) - target[valid].numpy()) ** 2))
            if val < best - 1e-6:
                best, stale, best_epoch = val, 0, ran
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                stale += 1
                if stale >= int(s["patience"]):
                    break
        if not fixed:
            if best_state is None:
                raise InputError(
                    None,
                    "finetune.lr",
                    f"{label}: no epoch gave a finite inner-validation MSE (lr "
                    f"{float(s['lr']):g}); lower finetune.lr",
                )
            network.load_state_dict(best_state)
        with torch.no_grad():  # the head now outputs measured units
            scale = torch.tensor(sd, dtype=torch.float32, device=self.device)
            shift = torch.tensor(mean, dtype=torch.float32, device=self.device)
            network.head.weight.mul_(scale[:, None])
            network.head.bias.mul_(scale).add_(shift)
        if fixed:
            log.info("%s: %d epoch(s) on %d constructs", label, ran, len(train))
        else:
            log.info(
                "%s: %d epoch(s), best %d, inner-validation MSE %.4g (standardised)",
                label,
                ran,
                best_epoch,
                best,
            )
        network.eval()
        return network, ran if fixed else best_epoch


# ---------------------------------------------------------------------------- the run


@dataclass
class FinetuneResult:
    """``cv``: one row per method x fold x column (n, spearman, pearson, r2); ``summary``:
    mean and sd over folds per method x column; ``predictions``: out-of-fold predictions
    per construct x column, one column per method; ``manifest``: the new bundle's."""

    cv: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    manifest: dict[str, Any]


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fingerprint(settings, ids, values, groups, seqs, bundle: Path, refs, inputs=()) -> str:
    """What a finished fold depends on: settings, table, k-mer sequences, the model inputs
    as placed (window, fill, background), the references' predictions and the bundle."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(json.dumps([list(ids), np.asarray(values).tolist(), list(groups)]).encode())
    for seq in seqs:
        digest.update(seq.encode() + b"\n")
    for item in inputs:
        for modality in ("dna", "rna", "protein"):
            seq = getattr(item, modality, None)
            seq = seq.tobytes() if isinstance(seq, np.ndarray) else str(seq or "").encode()
            digest.update(seq + b"\n")
    if refs is not None:
        digest.update(np.ascontiguousarray(refs, dtype=np.float64).tobytes())
    digest.update(_sha256(bundle / "model.pt").encode())
    return digest.hexdigest()


def _finished_fold(path: Path, methods: list[str]) -> dict[str, np.ndarray] | None:
    """The out-of-fold predictions a finished fold saved, or None (with a warning) when the
    file does not read back whole: zero-length or cut short (a crash of the machine before
    its data reached the disk), which failed every rerun in ``np.load``; the fold is
    computed again."""
    try:
        with np.load(path) as saved:
            return {m: saved[m] for m in methods}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        log.warning(
            "%s: not a finished fold (%s: %s); computed again", path, type(error).__name__, error
        )
        return None


def partial_dir(out_dir: Path) -> Path:
    """Where finished folds wait (``.{name}.partial`` beside the output)."""
    return out_dir.parent / f".{out_dir.name}.partial"


# the folder's own files: a finished fold, the fingerprint, and the temporary of a fold that
# a kill interrupted while atomic_path wrote it (removed when the run resumes)
PARTIAL_NAME = re.compile(r"fingerprint\.txt|fold\d+\.npz|(\.fold\d+\.npz\..+\.tmp)")


def _earlier_output(folder: Path) -> bool:
    """Whether ``folder`` is an earlier result of this command: its bundle's manifest holds
    a ``finetune`` record."""
    try:
        manifest = json.loads((folder / OUTPUTS["bundle"] / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("finetune"), dict)


def check_out_dir(out_dir: str | os.PathLike, inputs: Sequence[Any] = ()) -> None:
    """Before any work: the result replaces ``out_dir`` whole, so it must be absent, empty
    or an earlier result (only ``OUTPUTS`` names, a bundle with a ``finetune`` record), and
    neither hold nor lie inside an input (``inputs``: the start bundle, the table...); the
    finished-folds folder beside it (:func:`partial_dir`) may hold only its own files."""
    out_dir = Path(out_dir)
    check_output_folder(
        out_dir,
        names=OUTPUTS.values(),
        earlier=_earlier_output,
        inputs=inputs,
        what="fine-tuning output",
        option="-o",
    )
    work = partial_dir(out_dir)
    if work.is_symlink() or work.exists() and not work.is_dir():
        raise InputError(
            work, None, "not a folder of finished folds; remove it or choose another -o"
        )
    if work.is_dir():
        strangers = [p.name for p in work.iterdir() if not PARTIAL_NAME.fullmatch(p.name)]
        if strangers:
            raise InputError(
                work,
                None,
                f"holds {', '.join(sorted(strangers)[:3])}, not only finished folds "
                "(fingerprint.txt, fold*.npz), and a run would remove it; move it or "
                "choose another -o",
            )


# Folds below which even every fold won cannot say fine-tuning is better: all of K won is
# p = 1/2^K under no difference (one-sided sign test), over 0.05 for K < 5.
MIN_FOLDS_TO_TELL = 5
SIGN_TEST_P = 0.05


def sign_test_p(wins: int, n: int) -> float:
    """One-sided sign-test p-value of ``wins`` of ``n`` paired folds won: P(X >= wins) for
    X ~ Binomial(n, 1/2)."""
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n)


def beats(diffs: np.ndarray) -> bool | None:
    """Whether per-fold paired differences (fine-tune minus a method) say fine-tuning beats
    it: the folds won pass a one-sided sign test (p <= ``SIGN_TEST_P``) and the mean is more
    than one sd above zero. None when there are too few folds to tell (fewer than
    ``MIN_FOLDS_TO_TELL``, fine-tuning ahead in every one and beyond its spread: 4 of 4 won
    is p = 1/16); False otherwise. With 4-5 folds a mean alone is one lucky fold away; with
    10, one small loss no longer vetoes a large lead (9/10 won is p = 0.011)."""
    diffs = np.asarray(diffs, dtype=float)
    n, wins = len(diffs), int((diffs > 0).sum())
    if n < 2:
        return None if n == 1 and wins == 1 else False
    spread_ok = diffs.mean() - diffs.std(ddof=1) > 0
    if spread_ok and sign_test_p(wins, n) <= SIGN_TEST_P:
        return True
    if spread_ok and wins == n and n < MIN_FOLDS_TO_TELL:
        return None
    return False


def summarize(cv: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd (ddof 1) over folds of each metric, per method and column; ``folds`` the
    folds run and ``{metric}_folds`` those each mean averages (a fold whose metric is
    undefined, e.g. a constant or one-construct test fold, is left out). Each other
    method's row holds the paired per-fold Spearman difference fine-tune minus it on the
    folds where both are defined (``delta_spearman_mean``/``_sd``, ``delta_folds_won`` of
    ``delta_folds``), ``finetune_beats`` (:func:`beats`), and ``best_baseline`` marks the
    one of ``BASELINES`` with the higher mean Spearman."""
    rows = []
    for (method, column), part in cv.groupby(["method", "column"], sort=False):
        row = {"method": method, "column": column, "folds": len(part)}
        for metric in METRICS:
            values = part[metric].dropna().to_numpy(dtype=float)
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            row[f"{metric}_folds"] = len(values)
        rows.append(row)
    out = pd.DataFrame(rows)
    for key in ("delta_spearman_mean", "delta_spearman_sd", "delta_folds_won", "delta_folds"):
        out[key] = np.nan
    out["finetune_beats"] = pd.Series([None] * len(out), dtype=object)
    out["best_baseline"] = False
    # every (column, fold) kept, a Spearman undefined in every fold of a column included
    # (pivot_table dropped such a column, and looking it up raised a KeyError)
    by = cv.set_index(["column", "fold", "method"])["spearman"].unstack("method")
    if "finetune" not in by.columns:
        return out
    for i, row in out.iterrows():
        if row["method"] == "finetune":
            continue
        pair = by.loc[row["column"], ["finetune", row["method"]]].dropna()
        diffs = (pair["finetune"] - pair[row["method"]]).to_numpy(dtype=float)
        out.loc[i, "delta_folds"] = len(diffs)
        out.loc[i, "delta_folds_won"] = int((diffs > 0).sum())
        if len(diffs):
            out.loc[i, "delta_spearman_mean"] = float(diffs.mean())
        if len(diffs) > 1:
            out.loc[i, "delta_spearman_sd"] = float(diffs.std(ddof=1))
        out.at[i, "finetune_beats"] = beats(diffs)
    for column in dict.fromkeys(out["column"]):
        candidates = out[(out["column"] == column) & out["method"].isin(BASELINES)]
        candidates = candidates[np.isfinite(candidates["spearman_mean"].to_numpy(dtype=float))]
        if len(candidates):
            out.loc[candidates["spearman_mean"].astype(float).idxmax(), "best_baseline"] = True
    for key in ("delta_folds_won", "delta_folds"):
        out[key] = out[key].astype("Int64")
    return out


def verdicts(summary: pd.DataFrame) -> list[str]:
    """One plain sentence per column and reference (the best baseline, and calibrated
    zero-shot when it is not that) where fine-tuning does not beat it (:func:`beats`); and
    for every other method fine-tuning leads in every fold of too few folds to tell, that
    those folds cannot tell (a row's Δρ and folds won read as a win otherwise)."""
    out = []
    for column in dict.fromkeys(summary["column"]):
        part = summary[summary["column"] == column]
        chosen = part[part["best_baseline"].astype(bool)]
        calibrated = part[part["method"] == "zero_shot_calibrated"]
        references = pd.concat([chosen, calibrated]).drop_duplicates("method")
        others = part[
            (part["method"] != "finetune")
            & ~part["method"].isin(references["method"])
            & part["finetune_beats"].map(lambda beat: beat is None)
        ]
        for _, row in pd.concat([references, others]).iterrows():
            if row["finetune_beats"] is True:
                continue
            n = row["delta_folds"]
            if pd.isna(n) or int(n) == 0:
                out.append(
                    f"fine-tuning cannot be compared with {row['method']} on {column}: no fold "
                    "where both have a Spearman."
                )
                continue
            sd = row["delta_spearman_sd"]
            spread = f" ± {sd:.2f}" if np.isfinite(sd) else ""
            if row["finetune_beats"] is None:
                out.append(
                    f"fine-tuning leads {row['method']} on {column} in every fold (Δρ "
                    f"{row['delta_spearman_mean']:+.2f}{spread}, {int(n)}/{int(n)}), but "
                    f"{int(n)} folds cannot tell: all {int(n)} won is p = 1/{2 ** int(n)}; "
                    f"use {MIN_FOLDS_TO_TELL} or more folds (finetune.folds)."
                )
                continue
            out.append(
                f"fine-tuning does not beat {row['method']} on {column}: Δρ "
                f"{row['delta_spearman_mean']:+.2f}{spread}, {int(row['delta_folds_won'])}/"
                f"{int(n)} folds won."
            )
    return out


def cassette_digests(seqs: Sequence[str]) -> list[str]:
    """Each cassette's identity as a fine-tuned manifest records the constructs its final
    model trained on (``finetune.final_fit.cassette_digests``): the first 16 hex digits of
    the sha256 of its letters (upper case), one per distinct cassette, sorted."""
    return sorted({_cassette_digest(seq) for seq in seqs})


def _cassette_digest(seq: str) -> str:
    return hashlib.sha256(seq.upper().encode()).hexdigest()[:16]


def _seen_by_start(card: Mapping[str, Any]) -> tuple[set[str], bool]:
    """The cassette digests a fine-tuned start (and each fine-tuned bundle it came from,
    ``finetune.base.finetune``) trained on, and whether every fine-tuning in that lineage
    recorded them (bundles written before it was kept did not)."""
    seen: set[str] = set()
    whole = True
    record = card.get("finetune")
    while record is not None:
        digests = (record.get("final_fit") or {}).get("cassette_digests")
        if digests is None:
            whole = False
        seen.update(digests or ())
        record = (record.get("base") or {}).get("finetune")
    return seen, whole


def check_held_out(
    bundle: Path,
    card: Mapping[str, Any],
    ids: Sequence[str],
    seqs: Sequence[str],
    source: Mapping[str, Any] | None,
) -> None:
    """Fine-tuning a fine-tuned ``bundle`` (its manifest ``card``) on constructs it already
    trained on (its own table, or a superset) leaks them into every "held-out" fold, the
    zero-shot baseline included: one line naming how many and one, and the fix. A start
    that records no cassettes: refused if fine-tuned on this very table (its sha256), else a
    warning that the overlap cannot be checked."""
    if "finetune" not in card:
        return
    where = (source or {}).get("table")
    seen, whole = _seen_by_start(card)
    base = (card["finetune"].get("base") or {}).get("path", "its base bundle")
    fix = (
        f"fine-tune its base bundle ({base}, finetune.base.path) on the whole table instead, "
        "or drop those constructs"
    )
    if seen:
        known = [cid for cid, seq in zip(ids, seqs, strict=True) if _cassette_digest(seq) in seen]
        if known:
            raise InputError(
                where,
                None,
                f"{len(known)} of {len(ids)} constructs (e.g. {known[0]}) are cassettes the "
                f"start bundle {bundle} was already fine-tuned on (finetune.final_fit."
                "cassette_digests): their cross-validation would not be held out, nor its "
                f"zero-shot baseline; {fix}",
            )
    if whole:
        return
    recorded = ((card["finetune"].get("source") or {}).get("sha256")) or None
    if recorded is not None and recorded == (source or {}).get("sha256"):
        raise InputError(
            where,
            None,
            f"the start bundle {bundle} was fine-tuned on this very table (finetune.source."
            "sha256): its cross-validation would not be held out, nor its zero-shot "
            f"baseline; {fix}",
        )
    log.warning(
        "%s: the start bundle %s records no cassettes it was fine-tuned on (written before "
        "isoflow finetune kept them), so whether this table's constructs are among them "
        "cannot be checked: if they are, their cross-validation is not held out",
        where or "constructs",
        bundle,
    )


def run_finetune(
    bundle: str | os.PathLike,
    ids: Sequence[str],
    inputs: Sequence[Any],
    values: np.ndarray,
    columns: Sequence[str],
    groups: Sequence[str],
    seqs: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    settings: Mapping[str, Any] | None = None,
    reference_inputs: Sequence[Any] | None = None,
    source: dict[str, Any] | None = None,
    device: str | None = None,
    grouping: str = "given",
    construct_options: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Cross-validate fine-tuning of ``bundle`` on ``inputs`` (model inputs, ``ids`` in the
    same order) with measured ``values`` ``(n, len(columns))``, grouped by ``groups``
    (identical constructs merged into one group, near-identical ones in different groups a
    warning: :func:`fold_groups`; ``grouping`` says where the groups came from, recorded
    with them in the manifest's ``finetune.grouping``); ``seqs``: each construct's sequence
    for the k-mer ridge; ``reference_inputs``: for a variant table, each construct's
    reference (zero-shot = the bundle's effect alt - ref); ``construct_options``: how the
    constructs were read and placed (:func:`construct_record`), recorded in the manifest.
    Writes ``out_dir`` (``OUTPUTS``) atomically; returns :class:`FinetuneResult`."""
    import torch

    from isoflow.bundle import load_model, read_manifest
    from isoflow.metrics import tissue_metrics
    from isoflow.progress import Progress

    s = finetune_settings(settings)
    out_dir, bundle = Path(out_dir), Path(bundle)
    check_out_dir(out_dir, [bundle])
    values = np.asarray(values, dtype=np.float64)
    where = (source or {}).get("table")
    groups, group_record = fold_groups(ids, groups, seqs, inputs, by=grouping, where=where)
    if group_record["groups"] < int(s["folds"]):
        raise InputError(
            where,
            None,
            f"{group_record['groups']} group(s) once identical constructs share one (from "
            f"{group_record['groups_given']}), for {s['folds']} cross-validation folds: each "
            "fold needs a group of its own; lower finetune.folds or add distinct constructs",
        )
    folds = grouped_folds(groups, int(s["folds"]), int(s["seed"]))
    check_folds_vary(values, columns, folds, where)  # before any embedding
    check_targets(values, ids, columns, where)
    card = read_manifest(bundle)
    check_held_out(bundle, card, ids, seqs, source)  # before any work
    # a mistyped --zero-shot tissue (cell_A=Livr) was refused only after every embedding
    zero_shot_sources(list(columns), list(card["tissues"]), s["zero_shot"])
    columns = list(columns)
    seed = int(s["seed"])
    model = load_model(bundle, device=device)
    torch.manual_seed(seed)
    started = time.monotonic()
    tuner = Tuner(model, inputs, len(columns), s)
    # the bundle's predictions from embeddings of distinct sequences (the frozen ones again)
    embedded = {
        m: tuner.embedded.get(m) or _embed_distinct(model, inputs, m) for m in model.modalities
    }
    base = model.head(embedded)
    refs = None
    if reference_inputs is not None:  # a variant table: many constructs share a reference
        refs = model.head(
            {m: _embed_distinct(model, reference_inputs, m) for m in model.modalities}
        )
    zs = zero_shot(base, model.tissues, columns, s["zero_shot"], refs)
    zs_sources = zero_shot_sources(columns, model.tissues, s["zero_shot"])
    # not `source`: that is the table's record, written to the manifest and read for the stamp
    for column, tissues in zs_sources.items():
        n = len(tissues["tissues"])
        log.info(
            "zero-shot of %s: %s (%s)%s",
            column,
            f"the mean over {n} tissues" if n > 1 else tissues["tissues"][0],
            tissues["from"],
            f"; name a tissue with --zero-shot {column}=TISSUE"
            if tissues["from"].startswith("mean:")
            else "",
        )
    kmers = kmer_counts(seqs, int(s["kmer"]))
    log.info(
        "%d constructs, %d groups, %d column(s); mode %s; inputs embedded in %.1f s",
        len(ids),
        len(set(groups.tolist())),
        len(columns),
        s["mode"],
        time.monotonic() - started,
    )
    warn_small_folds(folds, groups, where)
    work = partial_dir(out_dir)
    fingerprint = _fingerprint(s, ids, values, groups, seqs, bundle, refs, inputs)
    stamp = work / "fingerprint.txt"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        log.info("%s: from other settings or data; starting afresh", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for leftover in work.iterdir():  # a fold a kill cut short while it was written
        match = PARTIAL_NAME.fullmatch(leftover.name)
        if match and match.group(1):
            leftover.unlink()
    stamp.write_text(fingerprint)
    methods = [m for m in FOLD_METHODS if m != "shuffled" or s["shuffled_control"]]
    oof = {m: np.full(values.shape, np.nan) for m in methods}
    fold_of = np.zeros(len(ids), dtype=int)
    progress = Progress("CV folds", len(folds), "fold", logger=log)
    for k, (train, test) in enumerate(folds):
        fold_of[test] = k
        done = work / f"fold{k}.npz"
        saved = _finished_fold(done, methods) if done.is_file() else None
        if saved is not None:
            for m in methods:
                oof[m][test] = saved[m]
            log.info("fold %d: finished before, read from %s", k + 1, done)
            progress.update(1)
            continue
        inner = inner_split(groups[train], float(s["inner_valid"]), seed + k)
        fit, valid = train[inner[0]], train[inner[1]]
        network, _ = tuner.fit(values, fit, valid, seed + k, f"fold {k + 1} finetune")
        found = {"finetune": tuner.predict(network, test), "zero_shot": zs[test]}
        found["kmer_ridge"] = ridge_predict(kmers, values, train, test, inner, s["ridge_alphas"])
        if "shuffled" in methods:
            rng = np.random.default_rng(seed + 1000 + k)
            shuffled = values.copy()
            shuffled[train] = values[rng.permutation(train)]
            network, _ = tuner.fit(shuffled, fit, valid, seed + k, f"fold {k + 1} shuffled")
            found["shuffled"] = tuner.predict(network, test)
        for m in methods:
            oof[m][test] = found[m]
        # on disk before it counts as finished: a crash of the machine cannot leave a fold
        # renamed into place but never written (zero-length after the reboot)
        with atomic_path(done, fsync=True) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **found)
        progress.update(1)
    progress.finish()
    # the zero-shot score put in the table's units by each fold's training part
    oof["zero_shot_calibrated"] = np.full(values.shape, np.nan)
    for train, test in folds:
        oof["zero_shot_calibrated"][test] = calibrate(zs, values, train, test)
    methods = [m for m in METHODS if m in oof]
    rows = []
    for m in methods:
        for k, (_, test) in enumerate(folds):
            for j, column in enumerate(columns):
                metric = tissue_metrics(values[test, j], oof[m][test, j])
                if m == "zero_shot":  # log(1 + TPM) against the table's units: see calibrated
                    metric["r2"] = None
                rows.append(
                    {"method": m, "fold": k + 1, "column": column, "n": len(test), **metric}
                )
    cv = pd.DataFrame(rows)
    summary = summarize(cv)
    predictions = pd.DataFrame(
        {
            "construct_id": np.repeat(np.asarray(ids, dtype=object), len(columns)),
            "group": np.repeat(groups, len(columns)),
            "fold": np.repeat(fold_of + 1, len(columns)),
            "column": np.tile(np.asarray(columns, dtype=object), len(ids)),
            "measured": values.reshape(-1),
            **{m: oof[m].reshape(-1) for m in methods},
        }
    )
    # the final model: the epoch count early stopping picks on an inner split of all the
    # groups, then a refit on every construct for that many epochs
    inner = inner_split(groups, float(s["inner_valid"]), seed + len(folds))
    _, best_epoch = tuner.fit(values, inner[0], inner[1], seed + len(folds), "final epochs")
    every = np.arange(len(ids))
    final, epochs = tuner.fit(
        values, every, every[:0], seed + len(folds), "final model", epochs=best_epoch
    )
    final_fit = {
        "constructs": len(ids),
        "groups": len(set(groups.tolist())),
        "epochs": epochs,
        "epochs_from": {
            "train_constructs": len(inner[0]),
            "valid_constructs": len(inner[1]),
            "valid_groups": len(set(groups[inner[1]].tolist())),
            "seed": seed + len(folds),
        },
        # what a later fine-tuning from this bundle checks its table against
        "cassette_digests": cassette_digests(seqs),
    }
    final_pred = tuner.predict(final, every)
    for note in undefined_fold_notes(summary):
        log.warning("%s%s", f"{where}: " if where else "", note)
    for method in methods:
        part = summary[summary["method"] == method]
        log.info(
            "%s: Spearman %s",
            method,
            ", ".join(
                f"{r.column} {r.spearman_mean:.3f} ± {r.spearman_sd:.3f}" for r in part.itertuples()
            ),
        )
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        manifest = write_bundle(
            tuner,
            final,
            tmp / OUTPUTS["bundle"],
            columns,
            s,
            summary,
            source,
            final_fit,
            group_record,
            construct_options,
            zs_sources,
        )
        check_bundle(tmp / OUTPUTS["bundle"], inputs, final_pred, model.device)
        cv.to_csv(tmp / OUTPUTS["cv"], sep="\t", index=False, float_format="%.6g")
        summary.to_csv(tmp / OUTPUTS["summary"], sep="\t", index=False, float_format="%.6g")
        predictions.to_csv(tmp / OUTPUTS["predictions"], sep="\t", index=False, float_format="%.6g")
        plot_cv(summary, tmp / OUTPUTS["figure"], demo=bool((source or {}).get("demo")))
        (tmp / OUTPUTS["html"]).write_text(
            summary_html(
                summary,
                group_record,
                zero_shot_note(zs_sources, len(model.tissues)),
                zero_shot_units(card),
            )
        )
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s written in %.1f s", out_dir, time.monotonic() - started)
    return FinetuneResult(cv, summary, predictions, manifest)


def write_bundle(
    tuner: Tuner,
    network,
    out: Path,
    columns: list[str],
    settings: dict,
    summary: pd.DataFrame,
    source: dict | None,
    final_fit: dict[str, Any],
    grouping: dict[str, Any] | None = None,
    construct_options: dict[str, Any] | None = None,
    zero_shot_tissues: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fine-tuned network as a bundle ``load_model`` reads: the base manifest with the
    measured columns as its outputs, the LoRA spec on adapted encoders, the CV summary as
    its metrics and a ``finetune`` record (start bundle, settings, source, ``final_fit``:
    the constructs, groups and epochs the final model trained on, and the inner split that
    chose the epoch count; ``grouping``: how the folds' groups were formed,
    :func:`fold_groups`; ``construct_options``: how the constructs were read and placed,
    :func:`construct_record`, absent when not given; ``zero_shot_tissues``: each column's
    zero-shot tissues and why, :func:`zero_shot_sources`, absent when not given); the frozen
    encoders' files copied."""
    import torch

    from isoflow.bundle import (
        CARD,
        CPU_KERNELS,
        WEIGHTS,
        _bundle_file,
        _write_manifest,
        inside,
        kernels_record,
    )

    base = tuner.model
    manifest = copy.deepcopy(base.card)
    manifest["run"] = f"finetune-{base.card['run']}"
    manifest["tissues"] = list(columns)
    if tuner.mode == "lora":
        for modality in tuner.trained_raw:
            manifest["encoders"][modality]["spec"]["lora"] = dict(settings["lora"])
    mean = {r.column: r.spearman_mean for r in summary[summary.method == "finetune"].itertuples()}
    manifest["metrics"] = {"cv": json.loads(summary.to_json(orient="records")), "mean": {}}
    manifest["metrics"]["mean"]["spearman"] = float(np.nanmean(list(mean.values())))
    manifest["finetune"] = {
        "base": {
            # absolute: messages point users to it, from any working directory
            "path": str(Path(base.path).resolve()),
            "run": base.card["run"],
            "sha256": _sha256(base.path / WEIGHTS),
            # a fine-tuned start: its own record, kept as lineage
            **({"finetune": base.card["finetune"]} if "finetune" in base.card else {}),
        },
        "settings": settings,
        "epochs": int(final_fit["epochs"]),
        "final_fit": final_fit,
        "grouping": grouping or {},
        "source": source or {},
    }
    if construct_options is not None:
        manifest["finetune"]["construct_options"] = dict(construct_options)
    if zero_shot_tissues is not None:
        manifest["finetune"]["zero_shot_tissues"] = dict(zero_shot_tissues)
    manifest.pop("check", None)
    out.mkdir(parents=True)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save(state, out / WEIGHTS)
    for entry in manifest["encoders"].values():
        if entry.get("weights") and entry["mode"] == "cached":
            # read_manifest allows encoders/NAME.pt only; inside() also refuses a name or a
            # link leading out of either bundle (it would copy a file outside out/)
            target = inside(out, entry["weights"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_bundle_file(base.path, entry["weights"]), target)
    (out / CARD).write_text(
        f"# isoflow fine-tuned model `{manifest['run']}`\n\nThe bundle `{base.card['run']}` "
        f"with a new head over the measured columns {', '.join(columns)}, fine-tuned "
        f"(mode {tuner.mode}) on a construct measurement table. This network was refit on "
        f"all {final_fit['constructs']} constructs ({final_fit['groups']} groups) for "
        f"{final_fit['epochs']} epoch(s), the count early stopping picked on an inner split "
        "(`manifest.json` -> `finetune.final_fit`). The cross-validated metrics "
        "(`metrics.cv` per method and column, with the paired comparison against the "
        "baselines; `metrics.mean` the CV mean Spearman of fine-tuning over the columns; "
        "the run's summary.tsv) estimate this procedure on held-out groups, not this network, "
        "which trained on every construct. Outputs are in the table's units, not "
        "log(1 + TPM).\n"
    )
    # the CPU kernels this fine-tuning ran on (the start bundle's may be other ones)
    manifest.pop(CPU_KERNELS, None)
    kernels = kernels_record(tuner.device)
    if kernels is not None:
        manifest[CPU_KERNELS] = kernels
    _write_manifest(out, manifest)
    return manifest


def check_bundle(path: Path, inputs, expected: np.ndarray, device) -> float:
    """Load the written bundle and predict ``inputs``: it must give the in-memory model's
    predictions (float32 rounding)."""
    from isoflow.bundle import load_model

    got = load_model(path, device=device).predict(inputs)
    diff = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
    if not diff <= 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
        raise InputError(path, None, f"the written bundle predicts up to {diff:.3g} away")
    log.info("bundle check: max |loaded - trained| %.3g over %d constructs", diff, len(inputs))
    return diff


# ---------------------------------------------------------------------------- outputs


def grouping_note(grouping: Mapping[str, Any] | None) -> str:
    """One sentence on how the folds' groups were formed (:func:`fold_groups`' record)."""
    if not grouping:
        return ""
    text = f"Folds grouped by {grouping['by']}: {grouping['groups']} groups"
    identical = grouping.get("identical") or {}
    if identical.get("constructs"):
        text += (
            f" ({grouping['groups_given']} given; {identical['constructs']} identical "
            "constructs in different groups merged them)"
        )
    near = grouping.get("near_identical") or {}
    if near.get("constructs"):
        a, b, m = near["example"]
        text += (
            f"; {near['constructs']} constructs have a near-identical one (at most "
            f"{near['max_mismatches']} mismatches) in another group, e.g. {a} and {b} ({m}): "
            "their scores are inflated"
        )
    if near and not near.get("complete", True):
        text += "; the near-identical check covered part of the table"
        if "checked" in near:  # records before it was counted say no more
            text += f" ({near['checked']:,} of {near['total']:,} constructs)"
    alike = grouping.get("shared_kmers") or {}
    others = alike.get("pairs", 0) - alike.get("near_identical_pairs", 0)
    if others:
        a, b, share = alike["examples"][0]
        text += (
            f"; {others} pair(s) of groups share most of their sequence (either "
            f"strand, any length), e.g. {a} and {b} ({share:.0%}): their scores are inflated"
        )
    return text + "."


def zero_shot_units(card: Mapping[str, Any]) -> str:
    """The units of a start bundle's own score (its manifest ``card``), as cv.html says them:
    log(1 + TPM), or for a fine-tuned start the table it was fine-tuned on."""
    record = card.get("finetune")
    if record is None:
        return "log(1 + TPM), not the table's units"
    table = (record.get("source") or {}).get("table") or "a table its manifest does not name"
    return f"in the units of {table}, the table the start bundle was fine-tuned on"


def summary_html(
    summary: pd.DataFrame,
    grouping: Mapping[str, Any] | None = None,
    zero_shot: str = "",
    units: str = "log(1 + TPM), not the table's units",
) -> str:
    """The report's table: mean ± sd over folds per method and column (with the folds a mean
    averages where fewer than were run), fine-tuning's paired Spearman difference against
    each other method, under a line on how the folds were grouped (:func:`grouping_note`)
    and one sentence per column where fine-tuning does not beat the best baseline or
    calibrated zero-shot (:func:`verdicts`); ``zero_shot``: the sentence on each column's
    zero-shot tissues (:func:`zero_shot_note`); ``units``: the zero-shot score's
    (:func:`zero_shot_units`)."""
    table = pd.DataFrame({"method": summary["method"], "column": summary["column"]})
    for metric in METRICS:
        counts = summary.get(f"{metric}_folds", summary["folds"])
        table[metric] = [
            "n/a"
            if not np.isfinite(m)
            else (f"{m:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{m:.3f}")
            + (f" ({n} of {k} folds)" if n < k else "")
            for m, sd, n, k in zip(
                summary[f"{metric}_mean"],
                summary[f"{metric}_sd"],
                counts,
                summary["folds"],
                strict=True,
            )
        ]
    table["folds"] = summary["folds"]
    if "delta_spearman_mean" in summary:
        table["Δρ finetune − method (folds won)"] = [
            ""
            if row.method == "finetune" or pd.isna(row.delta_folds) or not row.delta_folds
            else f"{row.delta_spearman_mean:+.3f}"
            + (f" ± {row.delta_spearman_sd:.3f}" if np.isfinite(row.delta_spearman_sd) else "")
            + f" ({int(row.delta_folds_won)}/{int(row.delta_folds)})"
            + (" best baseline" if row.best_baseline else "")
            for row in summary.itertuples()
        ]
    sentences = verdicts(summary) if "finetune_beats" in summary else []
    if "finetune" in set(summary["method"]) and "spearman_folds" in summary:
        sentences += undefined_fold_notes(summary)
    return (
        "<p>Grouped k-fold cross-validation on the construct table (held-out groups). "
        "finetune: the bundle with a new head, fine-tuned; zero_shot: the bundle's own score "
        f"({html.escape(units)}: no R²); zero_shot_calibrated: that score "
        "through a line fitted on each fold's training part; kmer_ridge: a ridge on k-mer "
        "counts; shuffled: fine-tuned on shuffled labels. Δρ: fine-tuning's Spearman minus "
        "the method's on the same held-out folds, mean ± sd over folds and folds won; "
        f"fine-tuning beats a method only when the folds it wins pass a one-sided sign test "
        f"(p ≤ {SIGN_TEST_P}: at least {MIN_FOLDS_TO_TELL} folds, e.g. 5/5 or 9/10 won) and "
        "the mean difference is more than one sd above zero."
        + (f" {html.escape(zero_shot)}" if zero_shot else "")
        + (f" {html.escape(grouping_note(grouping))}" if grouping else "")
        + "</p>\n"
        + "".join(f"<p><b>{html.escape(x)}</b></p>\n" for x in sentences)
        + table.to_html(index=False, border=0)
    )


def plot_cv(summary: pd.DataFrame, path: Path, demo: bool = False) -> None:
    """Spearman (mean ± sd over folds) per method, one group of bars per column."""
    from matplotlib.figure import Figure

    from isoflow.report.figures import save_figure

    columns = list(dict.fromkeys(summary["column"]))
    methods = list(dict.fromkeys(summary["method"]))
    fig = Figure(figsize=(max(4.0, 1.2 * len(columns) * len(methods) / 2 + 2), 3.2))
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        part = summary[summary["method"] == method].set_index("column").loc[columns]
        x = np.arange(len(columns)) + i * width
        ax.bar(x, part["spearman_mean"], width, yerr=part["spearman_sd"].fillna(0), label=method)
    # parse_math=False: the table's column names as written, a `$` pair not read as math
    ax.set_xticks(np.arange(len(columns)) + 0.4 - width / 2, columns, parse_math=False)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("Spearman (held-out folds)")
    ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    save_figure(fig, path, demo)


# ---------------------------------------------------------------------------- table -> run


def _background_digest(background: str | None) -> str | None:
    return None if background is None else hashlib.sha256(background.encode()).hexdigest()


def construct_record(
    placement: Mapping[str, Any],
    read_options: Mapping[str, Any],
    background_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """How the constructs were read and placed, every option filled with its default: the
    fine-tuned manifest's ``finetune.construct_options`` (``placement`` as
    :func:`isoflow.constructs.construct_inputs` takes it, the background as its sequence;
    ``read_options`` as :func:`isoflow.constructs.read_constructs` does)."""
    from isoflow.constructs import AAV_LIMIT

    background = placement.get("background")
    return {
        "fill": str(placement.get("fill") or "N").upper(),
        "background": None
        if background is None
        else {"path": str(background_path), "sha256": _background_digest(background)},
        "polya_in_rna": bool(placement.get("polya_in_rna", False)),
        "polya_tail": int(placement.get("polya_tail", 0)),
        "allow_noncanonical_cds": bool(read_options.get("allow_noncanonical_cds", False)),
        "aav": bool(read_options.get("aav", False)),
        "aav_limit": int(read_options.get("aav_limit") or AAV_LIMIT),
    }


def placement_differences(
    record: Mapping[str, Any],
    *,
    fill: str = "N",
    background: str | None = None,
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    background_path: str | os.PathLike | None = None,
) -> list[tuple[str, str, str]]:
    """``(key, as fine-tuned, as given)`` (shown as text: ``on``/``off`` for a switch) for
    each placement option that would give the model other inputs than the ones a bundle was
    fine-tuned on (``record``: its ``finetune.construct_options``): the RNA
    (``polya_in_rna``, ``polya_tail``) and the DNA around the cassette (``background`` by
    its sequence's sha256, else ``fill``). The reading options (``allow_noncanonical_cds``,
    ``aav``, ``aav_limit``) change which files are accepted, not the inputs: not compared."""

    def shown(value: Any) -> str:
        return ("on" if value else "off") if isinstance(value, bool) else str(value)

    out = []
    for key, given in (("polya_in_rna", bool(polya_in_rna)), ("polya_tail", int(polya_tail))):
        if record.get(key) != given:
            out.append((key, shown(record.get(key)), shown(given)))
    recorded = record.get("background")
    digest = _background_digest(background)
    if recorded or digest:
        if (recorded or {}).get("sha256") != digest:
            then = f"{recorded['path']} (sha256 {recorded['sha256'][:12]})" if recorded else "none"
            now = (
                f"{background_path or 'a background'} (sha256 {digest[:12]})" if digest else "none"
            )
            out.append(("background", then, now))
    elif str(record.get("fill", "N")).upper() != str(fill).upper():
        out.append(("fill", str(record.get("fill")), str(fill).upper()))
    return out


def finetune_table(
    table_path: str | os.PathLike,
    bundle: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    settings: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    placement: Mapping[str, Any] | None = None,
    read_options: Mapping[str, Any] | None = None,
    device: str | None = None,
    demo: bool = False,
) -> FinetuneResult:
    """:func:`run_finetune` on a measurement table (:func:`isoflow.measurements.read_measurements`,
    with ``read_options``: allow_noncanonical_cds, aav, aav_limit), each construct placed as
    ``isoflow score`` places it (``placement``: fill, background (a FASTA path),
    polya_in_rna, polya_tail): the options of both commands are one definition
    (:func:`isoflow.commands.add_construct_arguments`), recorded in the manifest's
    ``finetune.construct_options`` (:func:`construct_record`), which ``isoflow score``
    holds a scoring run to."""
    from isoflow.bundle import read_manifest
    from isoflow.constructs import check_placement, construct_inputs, read_background
    from isoflow.measurements import read_measurements
    from isoflow.score import check_finetuned_placement

    s = finetune_settings(settings)
    placement = {k: v for k, v in (placement or {}).items() if v is not None}
    read_options = {k: v for k, v in (read_options or {}).items() if v is not None}
    # before any work: the result replaces out_dir whole
    check_out_dir(out_dir, [table_path, bundle, placement.get("background")])
    table = read_measurements(table_path, columns=columns, folds=int(s["folds"]), **read_options)
    background_path = placement.get("background")
    if background_path:
        placement["background"] = read_background(background_path)
    start = read_manifest(bundle)
    window = int(start["dna"]["window"])
    check_placement(
        window,
        fill=placement.get("fill", "N"),
        background=placement.get("background"),
        polya_tail=placement.get("polya_tail", 0),
        background_path=background_path,
    )
    # a fine-tuned start learned from constructs placed one way: fine-tuning it further on
    # constructs placed another way is refused, as scoring it so is (before any work)
    check_finetuned_placement(
        [bundle],
        [start],
        fill=placement.get("fill", "N"),
        background=placement.get("background"),
        polya_in_rna=bool(placement.get("polya_in_rna", False)),
        polya_tail=int(placement.get("polya_tail", 0)),
        background_path=background_path,
        action="fine-tune",
    )
    reads_dna = "dna" in start["modalities"]  # else no warning of a cassette past the window
    inputs = [
        construct_inputs(c, window=window, reads_dna=reads_dna, **placement)
        for c in table.constructs
    ]
    source = {"table": str(table_path), "sha256": _sha256(Path(table_path)), "demo": demo}
    options = construct_record(placement, read_options, background_path)
    return run_finetune(
        bundle,
        table.ids,
        inputs,
        table.values,
        table.columns,
        table.groups,
        [c.cassette for c in table.constructs],
        out_dir,
        settings=s,
        source=source,
        device=device,
        grouping=table.grouping,
        construct_options=options,
    )


# ---------------------------------------------------------------------------- the command


# config keys in messages, shown as this command's flags (isoflow.commands)
FLAGS = {
    **CONSTRUCT_FLAGS,
    "finetune.folds": "--folds",
    "finetune.finetune_last": "--finetune-last",
    "finetune.max_epochs": "--max-epochs",
    "finetune.mode": "--mode",
    # `finetune.zero_shot.cell_A` reads `--zero-shot:cell_A` (the column the flag maps)
    "finetune.zero_shot.": "--zero-shot ",
    "finetune.zero_shot": "--zero-shot",
}


# Ctrl-C (isoflow.commands): the folds already finished stay in the partial folder
INTERRUPTED = (
    "interrupted; no output written (the folds already finished are kept: the same "
    "command resumes from them)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "table", help="measurement table (TSV: id, parts or genbank, measured columns, [group])"
    )
    parser.add_argument(
        *MODEL_FLAGS, required=True, metavar="BUNDLE", help="the model bundle to start from"
    )
    parser.add_argument(
        *OUT_FLAGS,
        required=True,
        metavar="DIR",
        help="output folder (not a prefix), replaced whole: new, empty, or an earlier "
        "isoflow finetune result",
    )
    parser.add_argument(
        "--columns", nargs="+", default=None, help="measured columns (default: all)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=FINETUNE_DEFAULTS["mode"],
        help="what trains: frozen (the head on frozen embeddings), finetune_last (also the "
        "last blocks of each raw encoder), lora (LoRA adapters) (default: %(default)s)",
    )
    parser.add_argument(
        "--finetune-last",
        type=blocks_or_all,
        default=None,
        help="mode finetune_last: blocks of each raw encoder that train (-1: all; default "
        f"{FINETUNE_DEFAULTS['finetune_last']})",
    )
    parser.add_argument(
        "--folds",
        type=fold_count,
        default=FINETUNE_DEFAULTS["folds"],
        help="cross-validation folds, groups kept whole (default: %(default)s)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=FINETUNE_DEFAULTS["max_epochs"],
        help="epochs at most per fold (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=nonnegative_int,
        default=FINETUNE_DEFAULTS["seed"],
        help="seed of the folds and the training (default: %(default)s)",
    )
    parser.add_argument(
        "--zero-shot",
        action="append",
        default=[],
        metavar="COLUMN=TISSUE",
        help="the bundle tissue whose score is a column's zero-shot baseline (repeatable; "
        "default: the tissue of the same name, in any case when one matches, else the mean "
        "over tissues; the run logs which)",
    )
    add_construct_arguments(parser)  # as isoflow score reads and places constructs
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from isoflow.measurements import has_genbank_column

    mapping = {}
    for item in args.zero_shot:
        column, sep, tissue = item.partition("=")
        if not sep or not column or not tissue:
            raise InputError(None, "--zero-shot", f"{item!r} is not COLUMN=TISSUE")
        mapping[column] = tissue
    if args.finetune_last is not None and args.mode != "finetune_last":
        raise InputError(
            "--finetune-last",
            None,
            f"only with --mode finetune_last (this is --mode {args.mode}, which it would not "
            "change); drop it or change the mode",
        )
    if args.finetune_last is None:
        args.finetune_last = FINETUNE_DEFAULTS["finetune_last"]
    settings = {
        "mode": args.mode,
        "finetune_last": args.finetune_last,
        "folds": args.folds,
        "max_epochs": args.max_epochs,
        "seed": args.seed,
        "zero_shot": mapping,
    }
    if args.aav_limit is not None and not args.aav and not has_genbank_column(args.table):
        raise InputError(  # as isoflow score: a table's cassettes are checked only with --aav
            "--aav-limit",
            None,
            f"needs --aav with a table of parts ({args.table}): its cassettes carry no ITR "
            "annotation, so only --aav checks them against the limit (a genbank column's "
            "records with two ITRs are checked without it); add --aav, or drop --aav-limit",
        )
    read_options, placement = construct_flags(args)
    finetune_table(
        args.table,
        args.model,
        args.out,
        settings=settings,
        columns=args.columns,
        placement=placement,
        read_options=read_options,
        device=args.device,
    )
    return 0
