"""Embedding cache: one forward per distinct sequence, pooling, lookup, missing items."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers.machine import cpu_vendor
from isoflow.embed import (
    STORE_DIR,
    EmbeddingCache,
    build_cache,
    dataset_items,
    pool_tokens,
    sequence_key,
)
from isoflow.errors import InputError
from isoflow.model.encoders import build_encoder

RNG = np.random.default_rng(1)


def protein(n):
    return "".join(RNG.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))


class CountingEncoder(torch.nn.Module):
    """Wraps a real encoder and counts the sequences it is asked to encode."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.dim = inner.dim
        self.modality = inner.modality
        self.encoded = []

    def tokenize(self, batch):
        self.encoded.extend(batch)
        return self.inner.tokenize(batch)

    def forward(self, **tokens):
        return self.inner(**tokens)


@pytest.fixture(scope="module")
def esm():
    return build_encoder("esm2", {"source": "tiny"}).eval()


def test_identical_sequences_are_encoded_once(tmp_path, esm):
    shared, other = protein(30), protein(12)
    items = {"ENST1.1": shared, "ENST2.1": shared, "ENST3.1": other, "ENST4.1": shared}
    counting = CountingEncoder(esm)
    keys = build_cache(counting, items, tmp_path / "cache", pool_to=8, batch_size=2)
    assert sorted(counting.encoded) == sorted([shared, other])
    assert keys["ENST1.1"] == keys["ENST2.1"] == keys["ENST4.1"] == sequence_key(shared)
    cache = EmbeddingCache(tmp_path / "cache")
    assert len(cache) == 2
    assert cache.meta["n_items"] == 4 and cache.meta["n_sequences"] == 2


def test_pooled_shapes_and_round_trip_equal_direct_output(tmp_path, esm):
    long, short = protein(50), protein(5)
    build_cache(esm, {"a": long, "b": short}, tmp_path / "cache", pool_to=16, batch_size=4)
    cache = EmbeddingCache(tmp_path / "cache")
    emb, mask = cache.lookup([sequence_key(long), sequence_key(short)])
    assert emb.dtype == torch.float32 and emb.shape == (2, 16, esm.dim)
    assert mask.sum(1).tolist() == [16, 5]

    with torch.no_grad():
        direct, direct_mask = esm(**esm.tokenize([long, short]))
    expected_long = pool_tokens(direct[0], 50, 16)
    expected_short = pool_tokens(direct[1], 5, 16)
    assert expected_long.shape == (16, esm.dim) and expected_short.shape == (5, esm.dim)
    # float16 storage: about three significant digits
    torch.testing.assert_close(emb[0], expected_long, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(emb[1, :5], expected_short, atol=2e-3, rtol=2e-3)
    assert emb[1, 5:].abs().sum() == 0
    # lookup by transcript ID gives the same
    by_item, _ = cache.lookup_items(["a", "b"])
    assert torch.equal(by_item, emb)


def test_pool_tokens_is_mean_over_windows():
    emb = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    pooled = pool_tokens(emb, 6, 3)
    assert pooled.tolist() == [[1, 2], [5, 6], [9, 10]]
    assert torch.equal(pool_tokens(emb, 4, 8), emb[:4])  # masked rows beyond length dropped


def test_missing_protein_gives_all_false_mask(tmp_path, esm):
    items = {"coding": protein(20), "noncoding": None, "empty": ""}
    keys = build_cache(esm, items, tmp_path / "cache", pool_to=8)
    assert keys["noncoding"] is None and keys["empty"] is None
    cache = EmbeddingCache(tmp_path / "cache")
    emb, mask = cache.lookup([keys["coding"], None, "0" * 40])
    assert mask[0].all() and not mask[1].any() and not mask[2].any()
    assert emb[1:].abs().sum() == 0
    items_table = pq.read_table(tmp_path / "cache" / "items.parquet").to_pydict()
    assert items_table["key"][1] is None
    emb, mask = cache.lookup_items(["noncoding"])
    assert not mask.any()


def test_all_missing_lookup_has_width_one(tmp_path, esm):
    build_cache(esm, {"x": None}, tmp_path / "cache", pool_to=4)
    emb, mask = EmbeddingCache(tmp_path / "cache").lookup([None, None])
    assert emb.shape == (2, 1, esm.dim) and not mask.any()


def test_dna_token_arrays_from_a_lazy_mapping(tmp_path):
    enformer = build_encoder("enformer", {"source": "tiny"}).eval()
    windows = {f"ENST{i}": RNG.integers(0, 5, 2048).astype(np.uint8) for i in range(3)}
    windows["ENST9"] = windows["ENST0"].copy()  # two isoforms sharing a TSS

    class Lazy(dict):
        reads = 0

        def items(self):
            for key in self.keys():
                Lazy.reads += 1
                yield key, windows[key]

    items = Lazy.fromkeys(windows)
    keys = build_cache(enformer, items, tmp_path / "cache", pool_to=4, batch_size=2)
    assert Lazy.reads == 8 and keys["ENST9"] == keys["ENST0"]  # two passes: keys, then sequences
    letters = "".join("ACGTN"[t] for t in windows["ENST1"])
    assert keys["ENST1"] == sequence_key(letters)  # a window hashes as its text
    cache = EmbeddingCache(tmp_path / "cache")
    emb, mask = cache.lookup_items(["ENST0", "ENST1"])
    assert emb.shape == (2, 4, enformer.dim) and mask.all()
    assert cache.meta["modality"] == "dna" and len(cache) == 3


def test_many_shards_read_back(tmp_path, esm):
    seqs = {f"p{i}": protein(10 + i) for i in range(6)}
    build_cache(esm, seqs, tmp_path / "cache", pool_to=32, batch_size=2, shard_rows=25)
    cache = EmbeddingCache(tmp_path / "cache")
    assert cache.meta["n_shards"] > 2
    emb, mask = cache.lookup_items(list(seqs))
    with torch.no_grad():
        direct, direct_mask = esm(**esm.tokenize(list(seqs.values())))
    assert torch.equal(mask, direct_mask)
    torch.testing.assert_close(emb, direct * direct_mask.unsqueeze(-1), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("batch_letters", [0, 120])
def test_the_shard_size_changes_no_stored_value(tmp_path, esm, batch_letters):
    """embed.shard_mb (shard_rows here) splits the same rows over other files: the items,
    keys and every stored row are the same, so it is no param of the embed rules
    (workflow.embed_shard_mb)."""
    seqs = {f"p{i}": protein(10 + 3 * i) for i in range(8)}
    caches = []
    for rows in (25, 1000):
        out = tmp_path / f"rows{rows}"
        build_cache(
            esm, seqs, out, pool_to=32, batch_size=3, shard_rows=rows, batch_letters=batch_letters
        )
        caches.append(EmbeddingCache(out))
    assert caches[0].meta["n_shards"] > 1 == caches[1].meta["n_shards"]
    first, second = (cache.lookup_items(list(seqs)) for cache in caches)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    items = [pq.read_table(tmp_path / f"rows{rows}" / "items.parquet") for rows in (25, 1000)]
    assert items[0].equals(items[1])


def _damage(cache, how):
    """``cache``'s shard 1 (or its index) damaged as ``how`` says."""
    shard = cache / "shard_00001.npy"
    rows = np.load(shard)
    if how == "missing":
        shard.unlink()
    elif how == "truncated":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif how == "width":
        np.save(shard, np.zeros((len(rows), rows.shape[1] + 1), np.float16))
    elif how == "dtype":
        np.save(shard, rows.astype(np.float32))
    elif how == "short":
        np.save(shard, rows[:-1])
    elif how == "not npy":
        shard.write_bytes(b"not an array")
    elif how in ("offset", "shard", "one past"):
        index = pq.read_table(cache / "index.parquet").to_pydict()
        at = index["shard"].index(1)
        if how == "offset":
            index["offset"][at] = len(rows)
        elif how == "shard":
            index["shard"][at] = 99
        else:  # the first number past the last shard
            index["shard"][at] = json.loads((cache / "meta.json").read_text())["n_shards"]
        pq.write_table(pa.table(index), cache / "index.parquet")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", r"shard_00001.npy: missing \(meta.json records this shard\)"),
        ("truncated", r"shard_00001.npy: cut short: \d+ bytes, its header says \d+"),
        (
            "width",
            r"shard_00001.npy: holds float16 rows of shape \(\d+, 65\), not float16 rows"
            r" of width 64",
        ),
        ("dtype", r"shard_00001.npy: holds float32 rows"),
        ("short", r"shard_00001.npy: holds \d+ rows, the index reads \d+"),
        ("not npy", r"shard_00001.npy: not a readable .npy array"),
        ("offset", r"shard_00001.npy: holds \d+ rows, the index reads \d+"),
        (
            "shard",
            r"index.parquet:[0-9a-f]+: shard 99, offset \d+, length \d+ is not in the \d+ shards",
        ),
        (
            "one past",
            r"index.parquet:[0-9a-f]+: shard (\d+), offset \d+, length \d+ is not in the \1 shards",
        ),
    ],
)
def test_a_damaged_shard_is_one_line_naming_it_when_the_cache_opens(tmp_path, esm, how, message):
    """Every shard's header and size are checked when the cache opens: a missing, cut short or
    foreign shard, or an index past a shard's end, is one line naming the file, not an error
    without a file name (or no error) at the first batch that reads it."""
    seqs = {f"p{i}": protein(10 + i) for i in range(6)}
    cache = tmp_path / "cache"
    build_cache(esm, seqs, cache, pool_to=32, batch_size=2, shard_rows=25)
    assert EmbeddingCache(cache).meta["n_shards"] > 2 and esm.dim == 64
    _damage(cache, how)
    hint = rf"; rebuild it: snakemake --forcerun {re.escape(str(cache))} \(rule embed, or "
    with pytest.raises(InputError, match=message + r".*" + hint + r"embed_shared under"):
        EmbeddingCache(cache)


def test_a_damaged_cache_names_the_rule_that_writes_it(tmp_path, esm):
    """The rebuild hint of a damaged cache is a command that works whichever rule writes it
    (`--forcerun` of the folder: under embed.share_forward rule embed_shared writes both
    caches, and `-R embed` planned nothing) and names the rule by the cache's pooling."""
    from isoflow.embed import rebuild_hint

    seqs = {f"p{i}": protein(10 + i) for i in range(6)}
    positional = {"mode": "positional", "dna_crop_bins": 8, "stride_nt": 16, "stride_aa": 4}
    for name, pooling, rule in (
        ("esm2", None, "embed"),
        ("esm2-positional", positional, "embed_positional"),
    ):
        cache = tmp_path / name
        build_cache(esm, seqs, cache, pool_to=32, batch_size=2, shard_rows=25, pooling=pooling)
        (cache / "shard_00000.npy").unlink()
        with pytest.raises(InputError) as error:
            EmbeddingCache(cache)
        assert str(error.value) == (
            f"{cache}/shard_00000.npy: missing (meta.json records this shard); rebuild it: "
            f"snakemake --forcerun {cache} (rule {rule}, or embed_shared under "
            "embed.share_forward, writes it)"
        )
    assert rebuild_hint("results/embeddings/esm2") == (
        "rebuild it: snakemake --forcerun results/embeddings/esm2 (rule embed, or embed_shared "
        "under embed.share_forward, writes it)"
    )


def test_failure_leaves_no_cache(tmp_path, esm):
    class Broken(CountingEncoder):
        def forward(self, **tokens):
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        build_cache(Broken(esm), {"a": protein(10)}, tmp_path / "cache", pool_to=4)
    assert not (tmp_path / "cache").exists()
    assert list(tmp_path.iterdir()) == []


def test_meta_records_extra_fields(tmp_path, esm):
    build_cache(esm, {"a": protein(9)}, tmp_path / "c", pool_to=4, meta={"encoder": "esm2"})
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["encoder"] == "esm2" and meta["dim"] == esm.dim and meta["pool_to"] == 4


def test_every_forward_runs_on_the_batch_size_the_cache_and_the_bundle_share(tmp_path, esm):
    """On a CPU a sequence's float32 tokens depend on how many sequences share its forward
    (and on the torch threads), and a last-bit change can flip the float16 stored: rule
    embed pads its short last batch to `embed_batch_size` (it ran 1 sequence), and
    encode_pooled(batch_size=...), what the bundle encodes new sequences with, runs
    forwards of exactly that many in any grouping, so its rows are the cache's bytes; the
    cache records the threads (the bundle's `threads`)."""
    import torch

    from isoflow.embed import encode_pooled

    # one length, as DNA windows are: the padding is the same in every grouping
    seqs = {f"P{i}": protein(24) for i in range(5)}
    counting = CountingEncoder(esm)
    build_cache(counting, seqs, tmp_path / "cache", pool_to=4, batch_size=2)
    assert len(counting.encoded) == 6 and counting.encoded[-2:] == [seqs["P4"]] * 2
    cache = EmbeddingCache(tmp_path / "cache")
    assert cache.meta["threads"] == torch.get_num_threads()
    ids = ["P3", "P0", "P4"]  # another order and count than the cache's batches
    counting.encoded.clear()
    rows = encode_pooled(counting, [seqs[i] for i in ids], 4, "cpu", ids, batch_size=2)
    assert len(counting.encoded) == 4  # 2 + 2: the last one padded
    stored, mask = cache.lookup_items(ids)
    for i, got in enumerate(rows):
        assert torch.equal(got.half().float(), stored[i, : int(mask[i].sum())]), ids[i]


# --- the items an encoder reads -----------------------------------------------------


def test_dataset_items_read_windows_on_the_right_strand(tmp_path):
    import pandas as pd
    import pysam

    from isoflow.genome import encode

    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nAACCGGTTAC\n")
    pysam.faidx(str(fasta))
    df = pd.DataFrame(
        {
            "transcript_id": ["T1", "T2", "T3"],
            "chrom": ["chr1"] * 3,
            "window_start": [0, 2, 8],
            "window_end": [4, 6, 12],
            "strand": ["+", "-", "+"],
            "rna_seq": ["ACGU", "AC", "A"],
            "protein_seq": ["MK", None, None],
        }
    )
    dna = dataset_items(df, "dna", fasta)
    assert len(dna) == 3 and list(dna) == ["T1", "T2", "T3"]
    assert dna["T1"].tolist() == encode("AACC").tolist()
    assert dna["T2"].tolist() == encode("CCGG", "-").tolist()
    assert dna["T3"].tolist() == encode("ACNN").tolist()  # past the contig end: N
    assert dataset_items(df, "protein") == {"T1": "MK", "T2": None, "T3": None}


def test_encoder_still_trains_after_building_a_cache(tmp_path):
    """Caching must not leave inference-mode tensors (rotary caches) behind."""
    encoder = build_encoder("esm2", {"source": "tiny", "finetune_last": -1})
    build_cache(encoder, {"a": protein(20)}, tmp_path / "cache", pool_to=4)
    emb, mask = encoder(**encoder.tokenize([protein(20)]))
    emb[mask].sum().backward()
    assert encoder.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_cache_pickles_without_its_shards(tmp_path, esm):
    import pickle

    build_cache(esm, {"a": protein(12)}, tmp_path / "cache", pool_to=4)
    cache = EmbeddingCache(tmp_path / "cache")
    before = cache.lookup_items(["a"])
    assert cache._shards  # mapped after the first lookup
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._shards == {}
    after = clone.lookup_items(["a"])
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_batch_gather_is_the_stored_float16_rows(tmp_path, esm):
    # CacheRows.take reads each entry's rows as stored (float16, bit for bit), across shards,
    # with padding and missing entries zero and masked; lookup is the same values as float32.
    seqs = {f"p{i}": protein(3 + 4 * i) for i in range(7)}
    seqs["none"] = None
    build_cache(esm, seqs, tmp_path / "cache", pool_to=16, batch_size=3, shard_rows=20)
    cache = EmbeddingCache(tmp_path / "cache")
    assert cache.meta["n_shards"] > 2
    index = pq.read_table(tmp_path / "cache" / "index.parquet").to_pydict()
    spans = zip(index["shard"], index["offset"], index["length"], strict=True)
    where = dict(zip(index["key"], spans, strict=True))
    order = ["p5", "none", "p0", "p6", "p2", "p5"]
    keys = cache.item_keys(order)
    for positions in (None, np.array([0, 3]), np.array([2])):
        emb, mask = cache.item_rows(order).take(positions)
        chosen = [keys[i] for i in (range(len(order)) if positions is None else positions)]
        lengths = [where[k][2] if k else 0 for k in chosen]
        assert emb.dtype == torch.float16 and emb.shape == (len(chosen), max(lengths), esm.dim)
        assert mask.sum(1).tolist() == lengths
        for row, key in enumerate(chosen):
            if key is None:
                assert not emb[row].any()
                continue
            shard, offset, length = where[key]
            stored = np.load(tmp_path / "cache" / f"shard_{shard:05d}.npy")
            stored = stored[offset : offset + length]
            assert emb[row, :length].numpy().tobytes() == stored.tobytes()
            assert not emb[row, length:].any()
    as_float, float_mask = cache.lookup(keys)
    emb, mask = cache.item_rows(order).take()
    assert as_float.dtype == torch.float32 and torch.equal(as_float, emb.float())
    assert torch.equal(float_mask, mask)


# --- bounded memory, resumption ------------------------------------------------------


class RampEncoder(torch.nn.Module):
    """A fast stand-in encoder: row i of a sequence is ``i / 100 + its first letter's code``
    in every one of ``dim`` columns (one real token per letter)."""

    modality = "protein"

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a device to run on

    def tokenize(self, batch):
        return {
            "lengths": torch.tensor([len(s) for s in batch]),
            "first": torch.tensor([ord(s[0]) for s in batch], dtype=torch.float32),
        }

    def forward(self, lengths, first):
        positions = torch.arange(int(lengths.max()), dtype=torch.float32)
        emb = positions[None, :, None] / 100 + first[:, None, None]
        mask = positions[None, :] < lengths[:, None]
        return emb.expand(-1, -1, self.dim) * mask[..., None], mask


class BadMaskEncoder(RampEncoder):
    """RampEncoder with a wrong mask for sequences starting with X (no real token) or Z (its
    real tokens last, after the padding)."""

    def forward(self, lengths, first):
        emb, mask = super().forward(lengths, first)
        mask = mask.clone()
        mask[first == ord("X")] = False
        mask[first == ord("Z")] = mask[first == ord("Z")].flip(1)
        return emb, mask


def test_an_encoder_mask_without_a_real_token_names_the_item(tmp_path):
    # pooled, no token would be a row of padding: the cache names the item, not its key
    items = {"tx1": "AAAAA", "tx2": "XAA", "tx3": "XAA"}
    with pytest.raises(InputError) as err:
        build_cache(BadMaskEncoder(2), items, tmp_path / "cache", pool_to=4)
    assert str(err.value) == "<input>:tx2: encoder returned no real token for a sequence"
    assert not (tmp_path / "cache").exists()


class OverflowEncoder(RampEncoder):
    """RampEncoder whose output is NaN for sequences starting with Q, inf for I and about
    72,000 (beyond float16's 65,504) for H."""

    def forward(self, lengths, first):
        emb, mask = super().forward(lengths, first)
        emb = emb.clone()
        emb[first == ord("Q")] = float("nan")
        emb[first == ord("I")] = float("inf")
        emb[first == ord("H")] *= 1000
        return emb, mask


@pytest.mark.parametrize(
    ("start", "what"), [("Q", "NaN or inf"), ("I", "NaN or inf"), ("H", "|value| 72")]
)
@pytest.mark.parametrize("positional", [False, True])
def test_a_pooled_row_float16_cannot_store_names_the_item(tmp_path, start, what, positional):
    """A NaN, an inf or a value float16 stores as inf (an encoder's overflow, under bf16
    autocast for one) fails the build naming the cache and the item: no cache is written
    with non-finite rows for training to meet later, or never for a test-only transcript."""
    items = {"tx1": "AAAAA", "tx2": "AC", "tx3": start + "AA", "tx4": "GG"}
    out = tmp_path / "cache"
    pooling = {"mode": "positional", "dna_crop_bins": 4, "stride_nt": 2, "stride_aa": 2}
    with pytest.raises(InputError) as err:
        build_cache(
            OverflowEncoder(2),
            items,
            out,
            pool_to=4,
            batch_size=2,
            pooling=pooling if positional else None,
        )
    message = str(err.value)
    assert message.startswith(f"{out}:tx3: the encoder's pooled output for this sequence (")
    assert what in message and "65504" in message and "\n" not in message
    assert not out.exists()


def test_float16s_largest_value_is_stored_and_one_above_is_refused(tmp_path):
    # RampEncoder's one-token sequence chr(n) is the value n
    build_cache(RampEncoder(2), {"tx1": chr(65504)}, tmp_path / "ok", pool_to=4)
    emb, _ = EmbeddingCache(tmp_path / "ok").lookup_items(["tx1"])
    assert emb.flatten().tolist() == [65504.0, 65504.0]
    with pytest.raises(InputError, match=r"^\S+/over:tx1: .*\|value\| 65505, beyond float16"):
        build_cache(RampEncoder(2), {"tx1": chr(65505)}, tmp_path / "over", pool_to=4)
    assert not (tmp_path / "over").exists()


def test_encoder_masks_must_be_left_aligned():
    from isoflow.embed import encode_pooled

    assert len(encode_pooled(BadMaskEncoder(2), ["AAAAA", "ZAAAA"], 4)) == 2  # same length
    with pytest.raises(ValueError, match=r"^encoder masks must be left-aligned \(real tokens"):
        encode_pooled(BadMaskEncoder(2), ["AAAAA", "ZAA"], 4)


def test_memory_held_is_one_shard_not_the_cache(tmp_path):
    """tracemalloc counts every byte numpy (which reports its buffers to it) and Python
    allocate, to the byte and whatever torch, pyarrow or earlier tests left in this process;
    ru_maxrss is a process-lifetime high-water mark that would need a fresh subprocess per
    case and moves by tens of MB with imports (bench/bench_embed_memory.py and
    test_embed_process.py measure RSS in a fresh interpreter)."""
    import tracemalloc

    encoder = RampEncoder(256)  # 64 pooled rows x 256 x 2 B = 32 KiB per sequence
    items = {f"p{i}": protein(80 + i % 7) for i in range(320)}  # 10 MiB of rows in all
    total = 320 * 64 * 256 * 2

    def peak(shard_mb, out):
        tracemalloc.start()
        build_cache(encoder, items, out, pool_to=64, batch_size=8, shard_mb=shard_mb)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return traced

    # a first small cache: what build_cache imports on first use (pandas, via pyarrow) is
    # not what it holds
    build_cache(encoder, {"w": protein(9)}, tmp_path / "warm", pool_to=64)
    bounded = peak(1, tmp_path / "bounded")
    assert EmbeddingCache(tmp_path / "bounded").meta["n_shards"] == 10
    assert bounded < 1.25 * 2**20  # the 1 MiB shard buffer, keys and index lists
    # the same measurement sees a whole cache held when the shard can hold all of it
    whole = peak(64, tmp_path / "whole")
    assert whole > total and EmbeddingCache(tmp_path / "whole").meta["n_shards"] == 1
    for name in ("index.parquet", "items.parquet"):
        a = pq.read_table(tmp_path / "bounded" / name).to_pydict()
        b = pq.read_table(tmp_path / "whole" / name).to_pydict()
        assert a["key"] == b["key"]
    got, _ = EmbeddingCache(tmp_path / "bounded").lookup_items(list(items))
    want, _ = EmbeddingCache(tmp_path / "whole").lookup_items(list(items))
    assert torch.equal(got, want)


class FailAfter(CountingEncoder):
    """Raises at forward call ``n + 1`` (a job killed mid-run)."""

    def __init__(self, inner, n):
        super().__init__(inner)
        self.n = n

    def forward(self, **tokens):
        if self.n == 0:
            raise RuntimeError("killed")
        self.n -= 1
        return self.inner(**tokens)


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("batch_letters", [0, 60])
def test_killed_run_resumes_to_identical_files(tmp_path, esm, batch_letters):
    from isoflow.embed import partial_dir

    items = {f"p{i}": protein(5 + (7 * i) % 23) for i in range(40)}
    items["dup"] = items["p3"]
    items["none"] = None
    options = dict(pool_to=8, batch_size=3, shard_rows=50, meta={"spec": {"a": 1}})
    options["batch_letters"] = batch_letters
    build_cache(esm, items, tmp_path / "whole", **options)
    whole = files_of(tmp_path / "whole")
    assert EmbeddingCache(tmp_path / "whole").meta["n_shards"] >= 5

    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        build_cache(FailAfter(esm, 6), items, out, **options)
    work = partial_dir(out)
    assert not out.exists() and sorted(p.name for p in work.iterdir())[:2] == [
        "shard_00000.json",
        "shard_00000.npy",
    ]
    finished = len(list(work.glob("shard_*.json")))
    assert finished >= 2
    done = sum(len(json.loads(r.read_text())["key"]) for r in work.glob("shard_*.json"))
    # what a kill mid-write leaves: a shard without its record, a temporary file
    (work / f"shard_{finished:05d}.npy").write_bytes(b"half")
    (work / ".shard_00009.npy.abc.tmp").write_bytes(b"")
    counting = CountingEncoder(esm)
    keys = build_cache(counting, items, out, **options)
    assert files_of(out) == whole  # byte for byte, shards, index, items and meta
    assert not work.exists() and keys["dup"] == keys["p3"]
    # only the sequences from the batch that straddles the last finished shard on (a
    # batch: at most 3, or 60 letters of sequences of at least 5)
    straddle = 3 if not batch_letters else 12
    assert 40 - done <= len(counting.encoded) < 40 - done + straddle


def test_a_zero_length_shard_is_encoded_again(tmp_path, esm, caplog):
    """A crash of the machine after a shard's rename but before its data reached the disk
    leaves a zero-length ``.npy`` (np.load: EOFError) beside its record: the rerun takes it
    as unfinished, encodes from there and ends with the files of an uninterrupted run."""
    from isoflow.embed import partial_dir

    items = {f"p{i}": protein(5 + i) for i in range(12)}
    options = dict(pool_to=8, batch_size=2, shard_rows=16)
    build_cache(esm, items, tmp_path / "whole", **options)
    out = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        build_cache(FailAfter(esm, 4), items, out, **options)
    work = partial_dir(out)
    assert (work / "shard_00001.json").exists()
    reused = len(json.loads((work / "shard_00000.json").read_text())["key"])
    (work / "shard_00001.npy").write_bytes(b"")
    counting = CountingEncoder(esm)
    build_cache(counting, items, out, **options)
    assert files_of(out) == files_of(tmp_path / "whole")
    # shard 0 reused: from the batch (of 2) that straddles its end on
    assert len(items) - reused <= len(counting.encoded) < len(items) - reused + 2


def test_a_shard_is_recorded_only_once_it_is_on_disk(tmp_path, esm, monkeypatch):
    """Each shard's ``.npy`` is synced before its record exists (a resumed run trusts the
    record); the sync runs beside the next shard's encoding, and its failure fails the job."""
    import isoflow.embed

    seen = []
    real = isoflow.embed.sync_tree

    def sync(path, **kwargs):
        path = Path(path)
        if path.suffix == ".npy":
            seen.append((path.name, path.with_suffix(".json").exists()))
        real(path, **kwargs)

    monkeypatch.setattr(isoflow.embed, "sync_tree", sync)
    items = {f"p{i}": protein(5 + i) for i in range(12)}
    options = dict(pool_to=8, batch_size=2, shard_rows=16)
    build_cache(esm, items, tmp_path / "cache", **options)
    n = EmbeddingCache(tmp_path / "cache").meta["n_shards"]
    assert n >= 3 and seen == [(f"shard_{i:05d}.npy", False) for i in range(n)]

    def broken(path, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(isoflow.embed, "sync_tree", broken)
    with pytest.raises(OSError, match="Input/output error"):
        build_cache(esm, items, tmp_path / "other", **options)
    assert not (tmp_path / "other").exists()


def test_shards_of_another_spec_or_sequence_set_are_not_reused(tmp_path, esm, caplog):
    from isoflow.embed import partial_dir

    items = {f"p{i}": protein(12 + i) for i in range(12)}
    options = dict(pool_to=8, batch_size=2, shard_rows=16)
    out = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        build_cache(FailAfter(esm, 4), items, out, meta={"spec": {"seed": 0}}, **options)
    assert list(partial_dir(out).glob("shard_*.json"))

    counting = CountingEncoder(esm)
    with caplog.at_level("WARNING", logger="isoflow.embed"):
        build_cache(counting, items, out, meta={"spec": {"seed": 1}}, **options)
    assert "another encoder spec or sequence set" in caplog.text
    assert sorted(counting.encoded) == sorted(items.values())  # all encoded afresh
    build_cache(esm, items, tmp_path / "fresh", meta={"spec": {"seed": 1}}, **options)
    assert files_of(out) == files_of(tmp_path / "fresh")

    # another sequence set under the same spec: one sequence changed
    with pytest.raises(RuntimeError):
        build_cache(FailAfter(esm, 4), items, tmp_path / "c2", **options)
    changed = dict(items, p11=protein(30))
    counting = CountingEncoder(esm)
    build_cache(counting, changed, tmp_path / "c2", **options)
    assert sorted(counting.encoded) == sorted(changed.values())


def test_progress_lines_give_rate_and_eta(tmp_path, esm, caplog):
    items = {f"p{i}": protein(10) for i in range(6)}
    with caplog.at_level("INFO", logger="isoflow.embed"):
        build_cache(esm, items, tmp_path / "c", pool_to=4, batch_size=2, progress_every_s=0)
    lines = [r.getMessage() for r in caplog.records if "sequences/s" in r.getMessage()]
    assert lines[0].startswith("embed c: 2 / 6 sequences (33.3%)") and "ETA" in lines[0]
    assert "6 sequences done in" in lines[-1]


def test_shard_mb_default_is_the_schema_default():
    from isoflow.embed import SHARD_MB
    from isoflow.workflow import schema_default

    assert SHARD_MB == schema_default("embed", "shard_mb")


# --- bf16 autocast on CUDA ------------------------------------------------------------


def test_autocast_only_on_cuda_and_only_for_bf16():
    import contextlib
    import warnings

    from isoflow.embed import embedding_autocast

    for precision in ("bf16", "fp32"):
        assert isinstance(embedding_autocast("cpu", precision), contextlib.nullcontext)
    assert isinstance(embedding_autocast("cuda", "fp32"), contextlib.nullcontext)
    with warnings.catch_warnings():  # no CUDA here: torch warns that it would be disabled
        warnings.simplefilter("ignore", UserWarning)
        context = embedding_autocast(torch.device("cuda", 0), "bf16")
    assert isinstance(context, torch.autocast)
    assert context.device == "cuda" and context.fast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        embedding_autocast("cpu", "fp16")


def test_build_cache_asks_for_autocast_on_the_encoders_device(tmp_path, esm, monkeypatch):
    import contextlib

    import isoflow.embed as embed

    asked = []

    def recording(device, precision="fp32"):
        asked.append((torch.device(device).type, precision))
        return contextlib.nullcontext()

    monkeypatch.setattr(embed, "embedding_autocast", recording)
    build_cache(esm, {"a": protein(9)}, tmp_path / "c", pool_to=4, precision="bf16")
    assert asked == [("cpu", "bf16")]
    assert "autocast" not in EmbeddingCache(tmp_path / "c").meta  # CPU: nothing changed


@pytest.mark.parametrize("name", ["esm2", "nucleotide_transformer", "enformer"])
def test_bf16_autocast_agrees_with_fp32_on_tiny_encoders(name):
    """What bf16 autocast does to the cached rows, on CPU (torch.autocast('cpu')): the
    pooled rows agree with fp32 within 3 % of the largest fp32 value. Measured worst case
    (3 batches each, 2026-11-26): ESM-2 0.30 %, NT 0.37 %, Enformer 0.99 %; bf16 keeps 8
    bits of mantissa (0.4 % per rounding)."""
    from isoflow.embed import encode_pooled

    encoder = build_encoder(name, {"source": "tiny"}).eval()
    if encoder.modality == "dna":
        batch = [RNG.integers(0, 5, 2048).astype(np.uint8) for _ in range(3)]
    elif encoder.modality == "rna":
        batch = ["".join(RNG.choice(list("ACGT"), n)) for n in (600, 90, 1500)]
    else:
        batch = [protein(n) for n in (200, 30, 500)]
    fp32 = encode_pooled(encoder, batch, 16, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = encode_pooled(encoder, batch, 16, "cpu")
    for a, b in zip(fp32, bf16, strict=True):
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
        scale = float(a.abs().max())
        worst = float((a - b).abs().max()) / scale
        assert worst < 0.03, f"{name}: max |bf16 - fp32| = {worst:.4f} of max |fp32|"
        assert not torch.equal(a, b)  # autocast did act on CPU


def test_length_buckets_fill_a_letter_budget_and_keep_the_values(tmp_path, esm):
    items = {f"p{i}": protein(5 + (13 * i) % 40) for i in range(30)}
    items["dup"] = items["p4"]
    counting = CountingEncoder(esm)
    batches = []
    counting.tokenize = lambda batch: (batches.append(list(batch)), esm.tokenize(batch))[1]
    build_cache(counting, items, tmp_path / "b", pool_to=8, batch_letters=100)
    build_cache(esm, items, tmp_path / "plain", pool_to=8, batch_size=4)
    flat = [len(s) for batch in batches for s in batch]
    assert flat == sorted(flat) and len(flat) == 30  # shortest first, each once
    assert all(len(b) * max(map(len, b)) <= 100 or len(b) == 1 for b in batches)
    assert len(batches) == EmbeddingCache(tmp_path / "b").meta["n_forward_batches"] < 30
    bucketed, mask = EmbeddingCache(tmp_path / "b").lookup_items(list(items))
    plain, plain_mask = EmbeddingCache(tmp_path / "plain").lookup_items(list(items))
    assert torch.equal(mask, plain_mask)
    # other batch partners, other padding: float rounding only
    torch.testing.assert_close(bucketed, plain, atol=2e-3, rtol=2e-3)


# ---------------------------------------------------------------- positional pooling

POSITIONAL = {"mode": "positional", "dna_crop_bins": 4, "stride_nt": 12, "stride_aa": 3}


def test_dna_positional_pooling_is_a_crop_centred_on_the_tss():
    from isoflow.embed import pool_positional

    emb = torch.arange(20, dtype=torch.float32).reshape(10, 2)  # 10 bins, TSS in bin 5
    crop = pool_positional(emb, 10, "dna", POSITIONAL)
    assert crop.tolist() == emb[3:7].tolist()  # unpooled; the TSS bin at index crop // 2
    assert crop[2].tolist() == emb[5].tolist()
    assert torch.equal(pool_positional(emb, 3, "dna", POSITIONAL), emb[:3])  # shorter: whole


def test_rna_and_protein_positional_pooling_is_a_fixed_stride_from_the_5_end():
    from isoflow.embed import max_pooled_rows, pool_positional

    emb = torch.arange(14, dtype=torch.float32).reshape(7, 2)
    # protein: 3 residues per slot, the last slot the mean of what is left
    pooled = pool_positional(emb, 7, "protein", POSITIONAL)
    assert pooled.tolist() == [[2, 3], [8, 9], [12, 13]]
    # the same slot covers the same residues whatever the length: a longer protein's first
    # slots are the shorter one's
    longer = torch.cat([emb, torch.full((5, 2), 99.0)])
    assert torch.equal(pool_positional(longer, 12, "protein", POSITIONAL)[:2], pooled[:2])
    # RNA: stride_nt 12 nt over NT's 6-mer tokens = 2 tokens per slot
    rna = pool_positional(emb, 7, "rna", POSITIONAL, letters_per_token=6)
    assert rna.tolist() == [[1, 2], [5, 6], [9, 10], [12, 13]]
    assert max_pooled_rows(POSITIONAL, "rna", 7 * 6, 6) >= 4
    assert max_pooled_rows(POSITIONAL, "dna", 10**6) == 4
    assert max_pooled_rows(8, "rna", 10**6) == 8


def test_positional_cache_stores_what_the_pooling_gives_and_records_it(tmp_path, esm):
    from isoflow.embed import encode_pooled, pool_positional

    seqs = {"a": protein(40), "b": protein(7), "c": None}
    build_cache(esm, seqs, tmp_path / "pos", pool_to=4, batch_size=2, pooling=POSITIONAL)
    cache = EmbeddingCache(tmp_path / "pos")
    assert cache.meta["pooling"] == POSITIONAL
    emb, mask = cache.lookup_items(["a", "b", "c"])
    assert mask.sum(1).tolist() == [14, 3, 0]  # ceil(40 / 3), ceil(7 / 3), missing
    with torch.no_grad():
        direct, _ = esm(**esm.tokenize([seqs["a"]]))
    expected = pool_positional(direct[0], 40, "protein", POSITIONAL)
    torch.testing.assert_close(emb[0], expected, atol=2e-3, rtol=2e-3)
    # what a bundle runs on a new sequence (encode_pooled) is what the cache holds
    again = encode_pooled(esm, [seqs["a"]], POSITIONAL, "cpu")[0]
    assert torch.equal(again.to(torch.float16).float(), emb[0])
    # an adaptive cache's meta.json has no pooling key: caches built before it are the same
    build_cache(esm, seqs, tmp_path / "adaptive", pool_to=4, batch_size=2)
    assert "pooling" not in EmbeddingCache(tmp_path / "adaptive").meta
    with pytest.raises(ValueError, match="positional"):
        build_cache(esm, seqs, tmp_path / "x", pool_to=4, pooling={"mode": "adaptive"})


def test_positional_dna_cache_of_a_tiny_enformer_keeps_the_centre_bins(tmp_path):
    enformer = build_encoder("enformer", {"source": "tiny"}).eval()
    windows = {f"ENST{i}": RNG.integers(0, 5, 2048).astype(np.uint8) for i in range(2)}
    build_cache(enformer, windows, tmp_path / "c", pool_to=2, pooling=POSITIONAL)
    emb, mask = EmbeddingCache(tmp_path / "c").lookup_items(list(windows))
    with torch.no_grad():
        direct, _ = enformer(**enformer.tokenize(list(windows.values())))
    bins = direct.shape[1]
    assert bins > 4 and mask.sum(1).tolist() == [4, 4]
    centre = direct[:, bins // 2 - 2 : bins // 2 + 2]
    torch.testing.assert_close(emb, centre, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("pooling", [16, POSITIONAL])
@pytest.mark.parametrize("modality", ["dna", "rna", "protein"])
def test_pooled_rows_is_what_the_pooling_keeps(pooling, modality):
    from isoflow.embed import pool_sequence, pooled_rows

    for tokens in (1, 3, 4, 5, 12, 13, 40):
        emb = torch.randn(tokens, 2)
        kept = pool_sequence(emb, tokens, pooling, modality, letters_per_token=6)
        assert pooled_rows(pooling, modality, tokens, letters_per_token=6) == len(kept)


# ---------------------------------------------------------------- scatter and gather


@pytest.mark.parametrize("batch_letters", [0, 120])
def test_parts_gathered_are_the_cache_one_job_writes(tmp_path, esm, batch_letters):
    """embed.jobs: 3 part jobs and a gather give the single job's keys, items and stored
    values (each part runs whole batches of the single job's plan), and one cache to read."""
    from isoflow.embed import gather_cache

    seqs = {f"p{i}": protein(5 + (i * 7) % 30) for i in range(23)}
    seqs["p3"] = seqs["p1"]  # a shared protein
    seqs["nc"] = None
    options = {"pool_to": 4, "batch_size": 3, "shard_rows": 10, "batch_letters": batch_letters}
    build_cache(esm, seqs, tmp_path / "one", **options)
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, folder in enumerate(parts):
        build_cache(esm, seqs, folder, part=(i, 3), **options)
    gather_cache(parts, tmp_path / "gathered")
    one, gathered = EmbeddingCache(tmp_path / "one"), EmbeddingCache(tmp_path / "gathered")
    assert len(gathered) == len(one) and set(gathered._index) == set(one._index)
    items = list(seqs)
    emb_one, mask_one = one.lookup_items(items)
    emb_gathered, mask_gathered = gathered.lookup_items(items)
    assert torch.equal(mask_gathered, mask_one) and torch.equal(emb_gathered, emb_one)
    meta_one, meta_gathered = one.meta, gathered.meta
    assert meta_gathered.pop("jobs") == 3
    for meta in (meta_one, meta_gathered):
        meta.pop("n_shards")
    assert meta_gathered == meta_one
    forward = [EmbeddingCache(p).meta["n_forward_batches"] for p in parts]
    assert all(n > 0 for n in forward)  # every part ran some of the batches
    # not a full set of parts is refused (parts of other items or settings: below)
    with pytest.raises(InputError, match="is not part 0 of 2"):
        gather_cache(parts[:1] + parts[2:], tmp_path / "bad")


# ---------------------------------------------------------------- one forward, two caches


@pytest.mark.parametrize("batch_letters", [0, 60])
def test_one_forward_writes_both_caches_as_each_alone(tmp_path, esm, batch_letters):
    # embed.share_forward: the adaptive and the positional cache of one encoder from the same
    # forwards, each folder the bytes build_cache writes for it alone, with half the forwards
    from isoflow.embed import build_caches

    items = {f"p{i}": protein(5 + (7 * i) % 23) for i in range(30)}
    items["dup"], items["none"] = items["p3"], None
    options = dict(pool_to=8, batch_size=3, shard_rows=40, meta={"spec": {"a": 1}})
    options["batch_letters"] = batch_letters
    alone = CountingEncoder(esm)
    build_cache(alone, items, tmp_path / "adaptive", **options)
    build_cache(alone, items, tmp_path / "positional", pooling=POSITIONAL, **options)
    shared = CountingEncoder(esm)
    keys = build_caches(
        shared, items, [(tmp_path / "a", None), (tmp_path / "p", POSITIONAL)], **options
    )
    assert files_of(tmp_path / "a") == files_of(tmp_path / "adaptive")
    assert files_of(tmp_path / "p") == files_of(tmp_path / "positional")
    assert sorted(shared.encoded * 2) == sorted(alone.encoded)
    assert keys["dup"] == keys["p3"] and keys["none"] is None


def test_one_forward_two_caches_resume_each_from_its_own_shards(tmp_path, esm):
    # the two caches fill their shards at different rates (positional rows are more), so a
    # kill leaves them with different finished shards; the resumed run encodes from the
    # earlier one and ends with both folders as an uninterrupted run writes them
    from isoflow.embed import build_caches, partial_dir

    items = {f"p{i}": protein(9 + (5 * i) % 17) for i in range(36)}
    options = dict(pool_to=4, batch_size=3, shard_rows=30)
    build_caches(esm, items, [(tmp_path / "a", None), (tmp_path / "p", POSITIONAL)], **options)
    outputs = [(tmp_path / "ra", None), (tmp_path / "rp", POSITIONAL)]
    with pytest.raises(RuntimeError, match="killed"):
        build_caches(FailAfter(esm, 7), items, outputs, **options)
    finished = [len(list(partial_dir(out).glob("shard_*.json"))) for out, _ in outputs]
    assert finished[0] != finished[1] and min(finished) >= 1
    counting = CountingEncoder(esm)
    build_caches(counting, items, outputs, **options)
    assert files_of(tmp_path / "ra") == files_of(tmp_path / "a")
    assert files_of(tmp_path / "rp") == files_of(tmp_path / "p")
    assert 0 < len(counting.encoded) < len(items)  # the finished shards were reused


def test_one_forward_needs_distinct_folders(tmp_path, esm):
    from isoflow.embed import build_caches

    with pytest.raises(ValueError, match="distinct output folders"):
        build_caches(esm, {"a": protein(9)}, [(tmp_path / "c", None)] * 2, pool_to=4)


def _demo_embed_threads() -> dict:
    import yaml

    demo = yaml.safe_load((Path(__file__).resolve().parents[2] / "config/demo.yaml").read_text())
    return demo["resources"]["embed_threads"]


@pytest.mark.parametrize("name", sorted(_demo_embed_threads()))
def test_demo_encoders_on_fewer_threads_embed_the_same_bytes(name):
    """config/demo.yaml gives these encoders' embed jobs other than 2 threads (so they run
    side by side), on the claim that their cache is the same at any thread count: the tiny
    encoder's token embeddings of a full-length batch (the demo's RNA/protein limits) are
    bit-identical at 1 and 2 torch threads. Enformer's are not (oneDNN's 1x1 convolution):
    it keeps 2 (docs/encoders.md, "Threads of an embed job"). On an Intel CPU NT-v2's are
    not either (MKL's CNR mode, MKL_CBWR=AVX2): within 1e-5 there, an expected failure."""
    encoder = build_encoder(name, {"source": "tiny"}).eval()
    if encoder.modality == "dna":
        batch = [RNG.integers(0, 5, 2048).astype(np.uint8) for _ in range(4)]
    elif encoder.modality == "rna":
        batch = ["".join(RNG.choice(list("ACGT"), n)) for n in (3000, 2400, 900, 3000)]
    else:
        batch = [protein(n) for n in (1000, 700, 250, 1000)]
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outputs.append(encoder(**encoder.tokenize(batch))[0])
    finally:
        torch.set_num_threads(before)
    if not torch.equal(outputs[0], outputs[1]) and cpu_vendor() != "AuthenticAMD":
        # Intel Xeon, MKL_CBWR=AVX2 (tests/conftest.py holds the kernels as the workflow
        # does): MKL's CNR mode reproduces a result at one thread count only; NT-v2's tiny
        # encoder moved up to 7.2e-7 between 1 and 2 threads (docs/encoders.md, "Threads")
        assert torch.allclose(outputs[0], outputs[1], rtol=0, atol=1e-5), name
        pytest.xfail(f"{name}: bit-identical at 1 and 2 threads on AMD CPUs only (MKL CNR)")
    assert torch.equal(outputs[0], outputs[1]), f"{name}: embeddings depend on the threads"


# The compiled forward (embed.compile): the stored float16 values may differ from the eager
# ones by float16 rounding of fp32 values that differ in the last bits (fused kernels sum in
# another order), so within two float16 steps; every other file is identical but meta.json,
# which records the backend.
COMPILED_RTOL, COMPILED_ATOL = 2**-9, 1e-4


def _eager_and_compiled(tmp_path, encoder, items, backend, batch_size, caplog):
    import logging

    build_cache(encoder, items, tmp_path / "eager", pool_to=4, batch_size=batch_size)
    with caplog.at_level(logging.INFO, logger="isoflow.embed"):
        build_cache(
            encoder, items, tmp_path / "compiled", pool_to=4, batch_size=batch_size, compile=backend
        )
    assert encoder._compiled_call_impl is None  # the encoder is eager again
    eager, compiled = files_of(tmp_path / "eager"), files_of(tmp_path / "compiled")
    assert eager.keys() == compiled.keys()
    meta = json.loads(compiled.pop("meta.json"))
    assert meta.pop("compile") == backend and meta == json.loads(eager.pop("meta.json"))
    for name, data in eager.items():
        if name.endswith(".npy"):
            want = np.load(tmp_path / "eager" / name)
            got = np.load(tmp_path / "compiled" / name)
            assert got.dtype == want.dtype == np.float16
            np.testing.assert_allclose(got, want, rtol=COMPILED_RTOL, atol=COMPILED_ATOL)
        else:
            assert compiled[name] == data, name
    return [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]


def one_layer_esm():
    spec = {"source": "tiny", "hparams": {"num_layers": 1}, "finetune_last": 0}
    return build_encoder("esm2", spec).eval()


def test_compiled_forward_pads_the_last_batch_and_compiles_only_the_first(tmp_path, caplog):
    # 5 proteins of one length in batches of 2: the last (1 protein) is padded to 2, so
    # only the first forward compiles (ESM-2's forward: several graphs between its graph
    # breaks). Backend "eager": dynamo's capture and the cache plumbing, in seconds.
    encoder = one_layer_esm()
    items = {f"P{i}": protein(16) for i in range(5)}
    lines = _eager_and_compiled(tmp_path, encoder, items, "eager", 2, caplog)
    assert len(lines) == 2, lines  # the one forward that compiled, and the summary
    assert "for tokens (2, 18), lengths (2,)" in lines[0]
    assert "graphs compiled in 3 forwards" in lines[-1]


@pytest.mark.slow
def test_compiled_dna_forward_pads_the_last_batch_and_compiles_one_graph(tmp_path, caplog):
    # 5 windows in batches of 2: the last (1 window) is padded to 2, so the one input shape
    # compiles one graph (Enformer's forward has no graph break). Backend "eager": dynamo's
    # capture without inductor's code generation (~20 s of capture on the dev box).
    enformer = build_encoder("enformer", {"source": "tiny"}).eval()
    windows = {f"ENST{i}": RNG.integers(0, 5, 2048).astype(np.uint8) for i in range(5)}
    lines = _eager_and_compiled(tmp_path, enformer, windows, "eager", 2, caplog)
    assert len(lines) == 2, lines  # the one forward that compiled, and the summary
    assert "1 new graph(s) for tokens (2, 2048)" in lines[0]
    assert lines[-1].startswith("torch.compile (eager): 1 graphs compiled in 3 forwards")


def test_compile_is_in_the_resume_fingerprint(tmp_path, esm, caplog):
    # An eager run's finished shards are not reused by a compiled run (nor the reverse):
    # one cache holds values of one mode.
    from isoflow.embed import partial_dir

    items = {f"P{i}": protein(12) for i in range(4)}
    out = tmp_path / "cache"

    class Killed(RuntimeError):
        pass

    class StopAfter(CountingEncoder):
        def forward(self, **tokens):
            if len(self.encoded) > 2:
                raise Killed
            return self.inner(**tokens)

    with pytest.raises(Killed):
        build_cache(StopAfter(esm), items, out, pool_to=4, batch_size=2, shard_rows=1)
    assert (partial_dir(out) / "shard_00000.json").exists()
    counting = CountingEncoder(esm)
    build_cache(counting, items, out, pool_to=4, batch_size=2, shard_rows=1, compile="eager")
    assert len(counting.encoded) == 4  # all encoded again: nothing resumed


@pytest.mark.slow
def test_inductor_compiled_esm2_cache_is_the_eager_one(tmp_path, caplog):
    # Inductor (C++ code generation on CPU: needs g++, .ci/install-debian.sh): a one-layer
    # ESM-2, 6 proteins in batches of 4 (the last padded): one input shape.
    encoder = one_layer_esm()
    items = {f"P{i}": protein(30) for i in range(6)}
    lines = _eager_and_compiled(tmp_path, encoder, items, "inductor", 4, caplog)
    assert "for tokens (4, 32), lengths (4,)" in lines[0]
    assert lines[-1].startswith("torch.compile (inductor):") and "in 2 forwards" in lines[-1]


# ---------------------------------------------------------------- gather checks


def _parts(tmp_path, encoders, options, n=2, seqs=None):
    """``n`` part caches of ``seqs``, part ``i`` built by ``encoders[i]`` with
    ``options[i]``."""
    seqs = seqs or {f"p{i}": protein(10 + (i * 7) % 30) for i in range(12)}
    folders = [tmp_path / f"part{i}" for i in range(n)]
    for i, folder in enumerate(folders):
        build_cache(encoders[i], seqs, folder, part=(i, n), **options[i])
    return folders


def test_gather_refuses_parts_built_with_other_settings(tmp_path, esm):
    # Each part's meta.json must be part 0's but for the part's own fields: another
    # pool_to / spec, batch size or encoder weights is one line naming the part, and no cache.
    from isoflow.embed import gather_cache

    base = {"pool_to": 4, "batch_size": 3, "meta": {"encoder": "esm2", "spec": {"pool_to": 4}}}
    other_weights = build_encoder("esm2", {"source": "tiny", "seed": 1}).eval()
    cases = {
        "pool_to": (esm, {**base, "pool_to": 16, "meta": {"spec": {"pool_to": 16}}}),
        "part_plan.batch_size 2 here, 3 in part 0": (esm, {**base, "batch_size": 2}),
        "weights_sha256": (other_weights, base),
    }
    for number, (message, (encoder, options)) in enumerate(cases.items()):
        folders = _parts(tmp_path / str(number), [esm, encoder], [base, options])
        with pytest.raises(InputError, match=r"part1:meta.json: built with other settings") as e:
            gather_cache(folders, tmp_path / str(number) / "gathered")
        assert message in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / str(number) / "gathered").exists()


def test_gather_refuses_parts_that_miss_or_repeat_a_sequence(tmp_path, esm):
    # Parts whose batch plans differ (meta.json made to agree, as parts from before the plan
    # was recorded would) leave a sequence out or hold one twice: refused, one line.
    from isoflow.embed import gather_cache

    def agree(folders):
        first = json.loads((folders[0] / "meta.json").read_text())
        meta = json.loads((folders[1] / "meta.json").read_text())
        meta.update({k: v for k, v in first.items() if k == "part_plan"})
        (folders[1] / "meta.json").write_text(json.dumps(meta))

    # batches of 5 then 2: part 0 holds sequences 0-4, part 1 6-11; p5 is in neither
    gap = _parts(tmp_path / "gap", [esm, esm], [{"pool_to": 4, "batch_size": b} for b in (5, 2)])
    agree(gap)
    with pytest.raises(InputError, match=r"gap:p5: its sequence \(\w+\) is in none of the 2"):
        gather_cache(gap, tmp_path / "gap" / "gathered")
    # batches of 2 then 5: part 0 holds 0-5, part 1 5-11; p5 is in both
    both = _parts(tmp_path / "both", [esm, esm], [{"pool_to": 4, "batch_size": b} for b in (2, 5)])
    agree(both)
    with pytest.raises(InputError, match=r"part1/index.parquet:\w+: sequence also in .*part0"):
        gather_cache(both, tmp_path / "both" / "gathered")
    assert not (tmp_path / "gap" / "gathered").exists()
    assert not (tmp_path / "both" / "gathered").exists()


def test_gather_refuses_parts_of_other_items(tmp_path, esm):
    # the same sequences in the same order (so the same part_plan) under other item IDs:
    # another dataset's parts, whose items.parquet would be read for this one's
    from isoflow.embed import gather_cache

    seqs = {f"p{i}": protein(10 + (i * 7) % 30) for i in range(12)}
    options = {"pool_to": 4, "batch_size": 3}
    build_cache(esm, seqs, tmp_path / "part0", part=(0, 2), **options)
    renamed = {f"q{i}": seq for i, seq in enumerate(seqs.values())}
    build_cache(esm, renamed, tmp_path / "part1", part=(1, 2), **options)
    with pytest.raises(InputError) as err:
        gather_cache([tmp_path / "part0", tmp_path / "part1"], tmp_path / "gathered")
    assert str(err.value) == (
        f"{tmp_path / 'part1'}:items.parquet: differs from part 0's ({tmp_path / 'part0'}): the "
        "parts were built from different items; rebuild them (rule embed_part) from one dataset"
    )
    assert not (tmp_path / "gathered").exists()


def test_gather_refuses_an_index_key_of_no_item(tmp_path, esm):
    from isoflow.embed import gather_cache

    folders = _parts(tmp_path, [esm, esm], [{"pool_to": 4, "batch_size": 3}] * 2)
    index = pq.read_table(folders[1] / "index.parquet").to_pydict()
    for name, value in (("key", "f" * 32), ("shard", 0), ("offset", 0), ("length", 1)):
        index[name].append(value)  # a row of a sequence no item has
    pq.write_table(pa.table(index), folders[1] / "index.parquet")
    with pytest.raises(InputError) as err:
        gather_cache(folders, tmp_path / "gathered")
    assert str(err.value) == (
        f"{folders[1] / 'index.parquet'}:{'f' * 32}: is the key of no item in items.parquet (a "
        "damaged part); rebuild the parts (rule embed_part)"
    )


def test_gather_refuses_parts_without_a_part_plan(tmp_path, esm):
    # parts from before meta.json recorded the batch plan cannot be checked: rebuilt
    from isoflow.embed import gather_cache

    folders = _parts(tmp_path, [esm, esm], [{"pool_to": 4, "batch_size": 3}] * 2)
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        del meta["part_plan"]
        (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError) as err:
        gather_cache(folders, tmp_path / "gathered")
    assert str(err.value) == (
        f"{folders[0]}:meta.json: records no part_plan (a part cache from before the gather "
        "checked settings); rebuild the parts (rule embed_part)"
    )


# ---------------------------------------------------------------- the weights


def test_weights_are_in_the_resume_fingerprint_and_meta(tmp_path, esm, caplog):
    # Weights re-downloaded under the same spec (revision `main` moved): a killed job's
    # shards of the old weights are not reused, and meta.json says which weights made it.
    from isoflow.embed import partial_dir, weights_digest

    items = {f"p{i}": protein(12) for i in range(8)}
    options = dict(pool_to=4, batch_size=2, shard_rows=8, meta={"spec": {"revision": "main"}})
    new = build_encoder("esm2", {"source": "tiny", "seed": 1}).eval()
    assert weights_digest(new) != weights_digest(esm)
    assert weights_digest(CountingEncoder(esm)) == weights_digest(esm)  # names left out
    out = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        build_cache(FailAfter(esm, 2), items, out, **options)
    assert list(partial_dir(out).glob("shard_*.json"))
    counting = CountingEncoder(new)
    with caplog.at_level("WARNING", logger="isoflow.embed"):
        build_cache(counting, items, out, **options)
    assert "not reused" in caplog.text
    assert sorted(counting.encoded) == sorted(items.values())  # all encoded afresh
    build_cache(new, items, tmp_path / "fresh", **options)
    assert files_of(out) == files_of(tmp_path / "fresh")
    assert EmbeddingCache(out).meta["weights_sha256"] == weights_digest(new)


def test_weights_digest_covers_every_tensor_dtype_and_shape():
    from isoflow.embed import weights_digest

    def holding(tensor):
        module = torch.nn.Module()
        module.register_buffer("w", tensor)
        return module

    a = torch.arange(6, dtype=torch.float32)
    assert weights_digest(holding(a)) == weights_digest(holding(a.clone()))
    changed = a.clone()
    changed[5] += 1e-6
    others = [changed, a.reshape(2, 3), a.reshape(3, 2), a.double(), a.to(torch.bfloat16)]
    digests = {weights_digest(holding(t)) for t in [a, *others]}
    assert len(digests) == 6  # values, shape, dtype (bfloat16 too: no numpy dtype)


def test_windows_digest_ignores_row_order_and_reads_every_window_column():
    """A DNA cache's windows_sha256 is the dataset's windows whatever their row order (a
    dataset written in another order is the same windows), and differs when any of the
    transcript, contig, start, end or strand does."""
    import pandas as pd

    from isoflow.embed import WINDOW_COLUMNS, windows_digest

    df = pd.DataFrame(
        {
            "transcript_id": ["T1", "T2", "T3"],
            "chrom": ["chr1", "chr1", "chr2"],
            "window_start": [100, 5000, 7],
            "window_end": [612, 5512, 519],
            "strand": ["+", "-", "+"],
            "rna": ["AC", "GT", "TT"],  # not a window column
        }
    )
    digest = windows_digest(df)
    assert windows_digest(df.iloc[[2, 0, 1]].reset_index(drop=True)) == digest
    assert windows_digest(df.assign(rna=["A", "A", "A"])) == digest
    changed = {
        "transcript_id": ["T1", "T2", "T4"],
        "chrom": ["chr1", "chr1", "chr3"],
        "window_start": [100, 5000, 8],
        "window_end": [612, 5512, 520],
        "strand": ["+", "+", "+"],
    }
    assert set(changed) == set(WINDOW_COLUMNS)
    for column, values in changed.items():
        assert windows_digest(df.assign(**{column: values})) != digest, column


def _embed_esm2(path, out, **options):
    """Rule embed's call for the tiny ESM-2 of TINY_CONFIG (the store beside ``out``)."""
    from helpers.training import TINY_CONFIG
    from isoflow.embed import embed_dataset
    from isoflow.model.encoders import spec_from_config

    return embed_dataset(path, "esm2", spec_from_config(TINY_CONFIG, "esm2"), out, **options)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A dataset, its ESM-2 cache built once through the store, and a counter of the
    forwards run after that."""
    import isoflow.embed
    from helpers.training import make_dataset

    (tmp_path / "data").mkdir()
    path, fasta = make_dataset(tmp_path / "data")
    out = tmp_path / "embeddings" / "esm2"
    _embed_esm2(path, out)
    calls = []
    forward = isoflow.embed.encode_pooled_many

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(isoflow.embed, "encode_pooled_many", counted)
    return path, out, _files(out), calls


def test_a_target_only_change_reuses_the_stored_cache(stored, caplog):
    """A dataset rewritten with other targets and splits (split.valid_fraction,
    gtex.min_samples on the same transcripts) made every embed job run its encoder again
    (GPU-days at full scale); the store gives the same bytes, hard-linked, no forward."""
    from isoflow.dataset import read_dataset, write_dataset

    path, out, before, calls = stored
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    df, tissues = read_dataset(path)
    df["split"] = df["split"].iloc[::-1].to_numpy()
    df[tissues[0]] = df[tissues[0]] + 1.0
    write_dataset(df, tissues, df.attrs["genome"], path)
    shutil.rmtree(out)  # what Snakemake does before it runs the job
    with caplog.at_level("INFO", logger="isoflow.embed"):
        _embed_esm2(path, out)
    assert calls == []
    assert _files(out) == before
    (entry,) = (out.parent / STORE_DIR).iterdir()
    assert all((out / name).stat().st_ino == (entry / name).stat().st_ino for name in before)
    # the files' sizes and mtimes, training's fingerprint of a cache, are the build's
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert f"reused cache {entry.name} (built " in caplog.text
    assert "embedding store" in caplog.text and "1 caches" in caplog.text


def test_a_changed_sequence_runs_the_encoder(stored):
    from isoflow.dataset import read_dataset, write_dataset

    path, out, before, calls = stored
    df, tissues = read_dataset(path)
    row = df["protein_seq"].notna().idxmax()
    df.loc[row, "protein_seq"] = "M" + df.loc[row, "protein_seq"][1:-1] + "W"
    write_dataset(df, tissues, df.attrs["genome"], path)
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert calls and _files(out) != before
    # the superseded cache, linked by no folder, is off the disk (embed.store_keep 0)
    assert len(list((out.parent / STORE_DIR).iterdir())) == 1


def test_an_interrupted_or_changed_store_entry_is_never_reused(stored, monkeypatch):
    """A build killed while it stores its cache leaves no entry (one rename, after the
    record and the sync); an entry whose file changed (written in place through a link)
    fails its sha256 and is built again."""
    import isoflow.embed

    path, out, before, calls = stored
    store = out.parent / STORE_DIR
    (entry,) = store.iterdir()
    shutil.rmtree(entry)
    shutil.rmtree(out)

    sync_tree = isoflow.embed.sync_tree
    work = isoflow.embed.partial_dir(out)

    def killed(folder, recursive=True):  # after the record, before the rename
        if Path(folder) == work:
            assert (work / isoflow.embed.STORE_RECORD).is_file()
            raise KeyboardInterrupt
        sync_tree(folder, recursive=recursive)

    with monkeypatch.context() as patch:
        patch.setattr(isoflow.embed, "sync_tree", killed)
        with pytest.raises(KeyboardInterrupt):
            _embed_esm2(path, out)
    assert calls and not out.exists() and not any(store.iterdir())
    calls.clear()
    _embed_esm2(path, out)  # built again, then stored
    assert calls and _files(out) == before
    shard = out / "shard_00000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))  # the same inode: the store's file too
    shutil.rmtree(out)
    calls.clear()
    _embed_esm2(path, out)
    assert calls and _files(out) == before


def test_a_code_change_builds_the_cache_again(stored, monkeypatch, tmp_path, caplog):
    """The store digest covered the spec, weights and items but not the code computing the
    rows: after a fix to the pooling or an encoder's module, deleting the cache folder (or
    --forcerun embed) hard-linked the old bytes back. The source of the modules is in the
    digest: the same content elsewhere (another checkout) reuses, a changed file builds."""
    import isoflow.embed
    import isoflow.model.encoders.esm2 as family

    path, out, before, calls = stored
    copy = tmp_path / "checkout" / "esm2.py"
    copy.parent.mkdir()
    copy.write_bytes(Path(family.__file__).read_bytes())
    monkeypatch.setattr(family, "__file__", str(copy))
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert calls == [] and _files(out) == before  # the same content: the same cache
    # a comment, a docstring or a line break is no code change: still the same cache (an
    # edited docstring missed every entry and pruned the only copy)
    text = copy.read_text()
    assert text.startswith('"""')  # the module's docstring, edited
    copy.write_text(text.replace('"""', '"""Edited. ', 1) + "\n# a note\n\n")
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert calls == [] and _files(out) == before

    forward = isoflow.embed.encode_pooled_many

    def fixed(*args, **kwargs):  # the code fix: other rows
        return [[rows + 1.0 for rows in pool] for pool in forward(*args, **kwargs)]

    monkeypatch.setattr(isoflow.embed, "encode_pooled_many", fixed)
    copy.write_text(copy.read_text() + "\n_A_FIX = 1\n")  # a statement: a code change
    shutil.rmtree(out)
    with caplog.at_level("INFO", logger="isoflow.embed"):
        _embed_esm2(path, out)
    assert calls and "reused cache" not in caplog.text
    shard = "shard_00000.npy"
    got = np.load(out / shard).astype(np.float32)
    assert not np.array_equal(got, _rows(before[shard]))
    assert np.allclose(got, _rows(before[shard]) + 1.0, rtol=1e-2, atol=1e-2)
    assert len(list((out.parent / STORE_DIR).iterdir())) == 1  # the old code's: deleted


def test_the_nt_dna_tss_placement_is_in_the_store_digest(tmp_path, monkeypatch):
    """Where NT puts a DNA window's TSS token (the crop, the N re-centring, the pooling's
    centre) decides the cache's rows: each function doing it is in a module the store
    digest covers, so a cache the old placement built (the TSS one token left of the middle
    in windows shorter than the crop) is not taken after the fix, and a change to the crop
    (registry.nt_dna_crop) builds the cache again."""
    import isoflow.embed
    import isoflow.model.registry as registry
    from isoflow.model.encoders.nucleotide_transformer import (
        NucleotideTransformerEncoder,
        nt_dna_token_starts,
    )

    encoder = build_encoder("nt_dna", {"source": "tiny"})
    covered = isoflow.embed.source_modules(encoder)
    placement = (
        NucleotideTransformerEncoder.dna_token_ids,
        nt_dna_token_starts,
        registry.nt_dna_crop,
        isoflow.embed.pool_positional,
    )
    assert {f.__module__ for f in placement} <= set(covered)
    before = isoflow.embed.source_digest(encoder)
    copy = tmp_path / "registry.py"
    source = Path(registry.__file__).read_text()
    assert "kmers = max(min(int(budget), centre // half), 0)" in source
    copy.write_text(source.replace("centre // half), 0)", "centre // half - 1), 0)"))
    monkeypatch.setattr(registry, "__file__", str(copy))
    assert isoflow.embed.source_digest(encoder) != before


def _rows(data: bytes) -> np.ndarray:
    import io

    return np.load(io.BytesIO(data)).astype(np.float32)


@pytest.mark.parametrize("how", ["code", "bypass", "threads"])
def test_a_killed_builds_shards_are_not_resumed_by_other_code_or_a_forced_build(
    tmp_path, monkeypatch, how
):
    """A build killed after some shards, then a code fix (or ISOFLOW_EMBED_STORE=0 to force
    a rebuild): the store missed as it should, but the partial build's fingerprint did not
    cover the code, and the bypass left the partial folder, so the new cache held the old
    code's first shards and the fix's last ones, filed under the new digest. Other torch
    threads on a CPU (other rows, as if) are in the fingerprint too."""
    import isoflow.embed
    import isoflow.model.encoders.esm2 as family
    from helpers.training import make_dataset
    from isoflow.embed import partial_dir

    (tmp_path / "data").mkdir()
    path, _ = make_dataset(tmp_path / "data")
    out = tmp_path / "embeddings" / "esm2"
    forward = isoflow.embed.encode_pooled_many
    state = {"n": 0, "kill_at": None, "shift": 0.0}

    def patched(*args, **kwargs):
        state["n"] += 1
        if state["kill_at"] is not None and state["n"] >= state["kill_at"]:
            raise KeyboardInterrupt("killed at the time limit")
        return [[rows + state["shift"] for rows in pool] for pool in forward(*args, **kwargs)]

    monkeypatch.setattr(isoflow.embed, "encode_pooled_many", patched)
    state["kill_at"] = 2  # the old code's build, killed after its first forward's shards
    with pytest.raises(KeyboardInterrupt):
        _embed_esm2(path, out, shard_mb=0.0005)
    assert list(partial_dir(out).glob("shard_*.npy")), "the killed build kept no shard"
    state.update(n=0, kill_at=None, shift=1.0)  # the fixed code: other rows
    if how == "code":
        copy = tmp_path / "esm2.py"
        copy.write_text(Path(family.__file__).read_text() + "\n_A_FIX = 1\n")
        monkeypatch.setattr(family, "__file__", str(copy))
    elif how == "threads":
        threads = torch.get_num_threads() + 1
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    else:
        monkeypatch.setenv("ISOFLOW_EMBED_STORE", "0")
    shutil.rmtree(out, ignore_errors=True)
    _embed_esm2(path, out, shard_mb=0.0005)
    got = {p.name: np.load(p) for p in sorted(out.glob("shard_*.npy"))}
    monkeypatch.setenv("ISOFLOW_EMBED_STORE", "0")
    fresh = tmp_path / "fresh" / "esm2"  # the fixed code's cache built whole
    _embed_esm2(path, fresh, shard_mb=0.0005)
    want = {p.name: np.load(p) for p in sorted(fresh.glob("shard_*.npy"))}
    assert len(got) > 1 and got.keys() == want.keys()
    assert all(np.array_equal(got[name], want[name]) for name in got)


@pytest.mark.parametrize(
    "change", ["capability", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "torch"]
)
def test_other_cpu_kernels_or_torch_build_the_cache_again(stored, monkeypatch, change):
    """A cache built on a CPU under other kernels (resources.cpu_kernels, or a CPU with
    other instruction sets) or another torch can differ in the last bits: README's
    "--forcerun the embed rules" to remake the results under the other setting must encode."""
    path, out, before, calls = stored
    if change == "capability":
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "OTHER")
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", "0.0.0+other")
    else:
        monkeypatch.setenv(change, "OTHER")
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert calls


@pytest.mark.parametrize("change", ["weights", "threads", "isoflow.embed"])
def test_other_weights_threads_or_embed_code_build_the_cache_again(stored, monkeypatch, change):
    """Each is in the store digest: weights re-downloaded at the same path and revision (a
    moved `main`), the torch threads of a CPU build (a kernel may split its sums by them),
    isoflow.embed itself (pooling, batching: STORE_SOURCES)."""
    import isoflow.embed

    path, out, before, calls = stored
    if change == "weights":
        build = isoflow.embed.frozen_encoder

        def moved(name, spec):
            encoder = build(name, spec)
            with torch.no_grad():
                next(encoder.parameters()).add_(0.5)
            return encoder

        monkeypatch.setattr(isoflow.embed, "frozen_encoder", moved)
    elif change == "threads":
        threads = torch.get_num_threads() + 1
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    else:
        copy = out.parent / "checkout" / "embed.py"
        copy.parent.mkdir()
        copy.write_text(Path(isoflow.embed.__file__).read_text() + "\n_A_POOLING_FIX = 1\n")
        monkeypatch.setattr(isoflow.embed, "__file__", str(copy))
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert calls
    shard = "shard_00000.npy"  # other rows only from other weights
    assert (_files(out)[shard] != before[shard]) is (change == "weights")


@pytest.mark.parametrize(
    ("package", "rebuilt"),
    [("fair-esm", True), ("transformers", False), ("enformer-pytorch", False)],
)
def test_an_upgraded_encoder_package_builds_the_cache_again(stored, monkeypatch, package, rebuilt):
    """The store took a cache the old fair-esm computed after an upgrade (only torch's
    version was in the digest): the ESM-2 family's packages' versions are in it now, and
    recorded in stored.json; an upgrade of another family's package (transformers: NT's;
    enformer-pytorch) keeps this cache."""
    from importlib import metadata

    from isoflow.embed import STORE_DIR, STORE_RECORD

    path, out, before, calls = stored
    (entry,) = (out.parent / STORE_DIR).iterdir()
    recorded = json.loads((entry / STORE_RECORD).read_text())["packages"]
    assert recorded == {"fair-esm": metadata.version("fair-esm")}
    installed = metadata.version

    def upgraded(name):
        return "999.0" if name == package else installed(name)

    monkeypatch.setattr(metadata, "version", upgraded)
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert bool(calls) is rebuilt
    assert _files(out) == before  # the same tiny model: the same bytes either way
    entries = sorted((out.parent / STORE_DIR).iterdir())
    assert len(entries) == 1 and (entries[0] != entry) is rebuilt
    if rebuilt:
        stored_now = json.loads((entries[0] / STORE_RECORD).read_text())["packages"]
        assert stored_now == {"fair-esm": "999.0"}


@pytest.mark.parametrize("how", ["env", "config"])
def test_the_store_can_be_bypassed_to_force_a_rebuild(stored, monkeypatch, caplog, how):
    """embed.store false or ISOFLOW_EMBED_STORE=0: the cache is encoded again and replaces
    its entry (no second copy); with the store on again the new entry is reused."""
    from isoflow.workflow import embed_store_options

    path, out, before, calls = stored
    store = out.parent / STORE_DIR
    (entry,) = store.iterdir()
    options = {}
    if how == "env":
        monkeypatch.setenv("ISOFLOW_EMBED_STORE", "0")
    else:
        options = embed_store_options({"embed": {"store": False}})
        assert options == {"store_reuse": False, "store_keep": 0}
    shutil.rmtree(out)
    with caplog.at_level("INFO", logger="isoflow.embed"):
        _embed_esm2(path, out, **options)
    assert calls and _files(out) == before
    assert "not reused" in caplog.text
    assert [p.name for p in store.iterdir()] == [entry.name]
    assert (out / "shard_00000.npy").stat().st_ino == (entry / "shard_00000.npy").stat().st_ino
    monkeypatch.delenv("ISOFLOW_EMBED_STORE", raising=False)
    calls.clear()
    shutil.rmtree(out)
    _embed_esm2(path, out)
    assert calls == [] and _files(out) == before


def test_store_env_values():
    from isoflow.embed import store_env
    from isoflow.workflow import embed_store_options

    assert store_env({}) and store_env({"ISOFLOW_EMBED_STORE": "1"})
    assert not store_env({"ISOFLOW_EMBED_STORE": "0"})
    with pytest.raises(InputError, match="ISOFLOW_EMBED_STORE"):
        store_env({"ISOFLOW_EMBED_STORE": "maybe"})
    assert embed_store_options({}) == {"store_reuse": True, "store_keep": 0}
    assert embed_store_options({"embed": {"store_keep": 2}})["store_keep"] == 2


def _drop_first_transcript(path):
    from isoflow.dataset import read_dataset, write_dataset

    df, tissues = read_dataset(path)
    df = df.iloc[1:].reset_index(drop=True)  # an item-set change (gtex.min_samples, tissues)
    write_dataset(df, tissues, df.attrs["genome"], path)


def _other_entry(entry, name, **meta):
    """A copy of store ``entry`` as another cache's (another encoder or pooling)."""
    other = entry.parent / name
    shutil.copytree(entry, other)
    info = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**info, **meta}))
    return other


def test_a_superseded_cache_is_deleted_before_the_new_build(stored, caplog):
    """After an item-set change the old entry stayed in the store, linked by no folder,
    forever, and the new cache was written beside it (2x a 97 GB Enformer cache). Now the
    entries of the same encoder and pooling no folder links go before the build; another
    encoder's or pooling's (a concurrent job's, maybe about to be linked) stay."""
    path, out, before, calls = stored
    store = out.parent / STORE_DIR
    (entry,) = store.iterdir()
    others = [
        _other_entry(entry, "0" * 64, encoder="nt_rna"),
        _other_entry(entry, "1" * 64, pooling={"mode": "positional", "slots": 4}),
    ]
    _drop_first_transcript(path)
    shutil.rmtree(out)  # Snakemake deletes the output before it reruns the job
    with caplog.at_level("INFO", logger="isoflow.embed"):
        _embed_esm2(path, out)
    assert calls
    assert not entry.exists() and f"deleted {entry.name}" in caplog.text
    assert sorted(store.iterdir()) == sorted([*others, store / _only_linked(store, out)])


def _only_linked(store, out):
    (name,) = [
        e.name
        for e in store.iterdir()
        if (e / "shard_00000.npy").stat().st_ino == (out / "shard_00000.npy").stat().st_ino
    ]
    return name


def test_store_keep_keeps_the_newest_unlinked_entries(stored):
    path, out, before, calls = stored
    store = out.parent / STORE_DIR
    (first,) = store.iterdir()
    _drop_first_transcript(path)
    shutil.rmtree(out)
    _embed_esm2(path, out, store_keep=1)
    second = store / _only_linked(store, out)
    assert sorted(store.iterdir()) == sorted([first, second])  # one orphan kept
    _drop_first_transcript(path)
    shutil.rmtree(out)
    _embed_esm2(path, out, store_keep=1)
    third = store / _only_linked(store, out)
    assert sorted(store.iterdir()) == sorted([second, third])  # the newest orphan kept
    # a folder still linking its entry keeps it, whatever store_keep
    _drop_first_transcript(path)
    _embed_esm2(path, out.parent / "elsewhere", store_keep=0)
    assert third.exists()
