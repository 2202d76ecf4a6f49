"""Encoders behind one interface: tiny configs of the real classes, and the pretrained
loading code run on tiny checkpoints saved in the real on-disk layout, offline."""

import importlib
import json
import math
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

import isoflow.model.encoders as encoders_package
from helpers.encoders import save_tiny_esm2, save_tiny_nt_snapshot
from helpers.paths import REPO
from isoflow.config import check_config
from isoflow.embed import pool_positional
from isoflow.errors import InputError
from isoflow.model.encoders import (
    build_encoder,
    family,
    nt_vocabulary,
    one_hot_dna,
    random_encoder,
    spec_from_config,
)
from isoflow.model.registry import ENCODER_HOST_MB, ENCODERS, FAMILY_PACKAGES, IMPORT_MB
from isoflow.settings import ENCODER_DEFAULTS

RNG = np.random.default_rng(0)


@pytest.fixture
def offline(monkeypatch):
    """No network: the Hub is switched off and any socket connection fails."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def dna_batch(batch=2, length=2048):
    return RNG.integers(0, 5, (batch, length)).astype(np.uint8)


def random_rna(n):
    return "".join(RNG.choice(list("ACGT"), n))


def random_protein(n):
    return "".join(RNG.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))


def batch_of(modality):
    """A one-item batch of what an encoder of ``modality`` reads."""
    if modality == "dna":
        return dna_batch(1, 2048)
    if modality == "rna":
        return [random_rna(60)]
    return [random_protein(30)]


# --- the interface ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "length", "bins"),
    [("enformer", 2048, 8), ("borzoi", 2048, 16)],
)
def test_dna_encoders_give_bins_times_dim(name, length, bins):
    encoder = build_encoder(name, {"source": "tiny"})
    assert encoder.modality == "dna"
    emb, mask = encoder(**encoder.tokenize(dna_batch(2, length)))
    assert emb.shape == (2, bins, encoder.dim)
    assert mask.dtype == torch.bool and mask.all()
    assert torch.isfinite(emb).all()


@pytest.mark.parametrize(
    ("name", "hparams", "window"),
    [
        ("enformer", {}, 2048),  # the tiny target_length
        ("enformer", {"target_length": -1}, 4096),  # every bin: window / 128
        ("borzoi", {}, 2048),  # the tiny bins_to_return
        ("borzoi", {"bins_to_return": -1}, 4096),  # every bin: window / 32
        ("nt_dna", {}, 2048),
    ],
)
def test_dna_span_counts_the_tokens_the_encoder_returns(name, hparams, window):
    """workflow.dna_span reads bp per token and the token cap from registry.TOKEN_GEOMETRY,
    without building the encoder: the tiny encoders return exactly that many tokens."""
    from isoflow.workflow import dna_span

    spec = {"source": "tiny", "hparams": hparams}
    config = {
        "dna": {"window": window},
        "encoders": {name: spec},
        "model": {"cached_modalities": []},
    }
    span = dna_span(config, {"modalities": ["dna"], "dna_encoder": name})
    encoder = build_encoder(name, spec)
    # A, C, G, T only: an N restarts NT's 6-mer frame (more tokens than window / 6)
    acgt = np.random.default_rng(0).integers(0, 4, (1, window)).astype(np.uint8)
    emb, mask = encoder(**encoder.tokenize(acgt))
    assert span["mode"] == "raw" and mask.sum() == span["tokens"]


def test_token_geometry_of_published_weights():
    from borzoi_pytorch.config_borzoi import BorzoiConfig

    from isoflow.model.encoders.enformer import EnformerEncoder
    from isoflow.model.registry import TOKEN_GEOMETRY

    assert TOKEN_GEOMETRY["borzoi"].pretrained == BorzoiConfig().bins_to_return == 6144
    assert EnformerEncoder.REAL_HPARAMS["target_length"] == TOKEN_GEOMETRY["enformer"].pretrained


def test_enformer_dim_is_twice_hparam_dim():
    encoder = build_encoder("enformer", {"source": "tiny", "hparams": {"dim": 48}})
    assert encoder.dim == 96


def test_one_hot_n_is_all_zero():
    one_hot = one_hot_dna(torch.tensor([[0, 1, 2, 3, 4]]))
    assert one_hot[0, :4].tolist() == torch.eye(4).tolist()
    assert one_hot[0, 4].sum() == 0


def test_dna_windows_of_different_length_fail():
    encoder = build_encoder("enformer", {"source": "tiny"})
    with pytest.raises(InputError, match="differ in length"):
        encoder.tokenize([np.zeros(2048, np.uint8), np.zeros(1024, np.uint8)])


def test_unknown_encoder_and_source_fail_with_one_line():
    with pytest.raises(InputError, match="unknown encoder 'hyena'"):
        build_encoder("hyena", {})
    with pytest.raises(InputError, match="tiny or pretrained"):
        build_encoder("esm2", {"source": "download"})


def test_tiny_build_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_encoder("esm2", {"source": "tiny"})
    after = torch.rand(1)
    b = build_encoder("esm2", {"source": "tiny"})
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


# --- Nucleotide Transformer tokenization ----------------------------------------------


def test_nt_vocabulary_has_4107_tokens():
    vocab = nt_vocabulary()
    assert len(vocab) == 4107 and len(set(vocab)) == 4107
    assert vocab[:6] == ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    assert vocab[-5:] == list("ATCGN")


def test_nt_tokenizes_6mers_and_restarts_the_frame_after_n():
    encoder = build_encoder("nucleotide_transformer", {"source": "tiny"})
    vocab = {t: i for i, t in enumerate(nt_vocabulary())}

    def tokens(seq):
        inverse = {i: t for t, i in vocab.items()}
        return [inverse[i] for i in encoder.token_ids(seq)]

    assert tokens("ACNGTACGTAC") == ["A", "C", "N", "GTACGT", "A", "C"]
    assert tokens("ACGTAC" + "NNACGT" + "GGA") == ["ACGTAC", "N", "N", "ACGTGG", "A"]
    assert tokens("ACRYGTACGTAA") == ["A", "C", "<unk>", "GTACGT", "A", "A"]  # IUPAC run
    assert tokens("acgtacgt") == ["ACGTAC", "G", "T"]  # upper-cased first
    tokens_ = encoder.tokenize(["acgtac"])
    assert tokens_["input_ids"][0].tolist() == [vocab["<cls>"], vocab["ACGTAC"]]  # no EOS


def nt_hub_tokenizer(folder):
    """NT-v2's tokenizer as the Hub repository ships it (vocab.txt, tokenizer_config.json,
    special_tokens_map.json; InstaDeepAI/nucleotide-transformer-v2-250m-multi-species holds
    a 129-byte tokenizer_config.json: this one, as InstaDeepAI/segment_nt writes it),
    loaded the way the pretrained path loads it."""
    import json

    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(nt_vocabulary()) + "\n")
    config = {
        "clean_up_tokenization_spaces": True,
        "eos_token": None,
        "model_max_length": 2048,
        "tokenizer_class": "EsmTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"cls_token": "<cls>", "mask_token": "<mask>", "pad_token": "<pad>"}
    special["unk_token"] = "<unk>"
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def test_nt_tiny_tokenizer_gives_the_hub_tokenizers_ids(tmp_path):
    hub = nt_hub_tokenizer(tmp_path / "nt")
    tiny = build_encoder("nucleotide_transformer", {"source": "tiny"})
    assert hub.get_vocab() == tiny.vocab
    rng = np.random.default_rng(5)
    letters = np.array(list("ACGTACGTACGTNRYKMSWBDHVUacgtn"))
    sequences = [
        "ACNGTACGTAC",
        "ACRYGTACGTAA",
        "acgtacGTACGTA",
        "NNNNNNACGTAC",
        "ACGTRRRACGTACG",
        "AcGTACGTACGTn",
        "ACGUACGTAC",  # U is not in NT's vocabulary: <unk>
    ] + ["".join(rng.choice(letters, int(rng.integers(1, 80)))) for _ in range(300)]
    for seq in sequences:
        want = hub(seq.upper(), add_special_tokens=False)["input_ids"]
        assert tiny.token_ids(seq) == want, seq
    # what the Hub tokenizer does with lowercase: a run is one <unk>, so isoflow upper-cases
    unk = hub.convert_tokens_to_ids("<unk>")
    assert hub("acgtacgtacgt", add_special_tokens=False)["input_ids"] == [unk]
    # with CLS and no EOS, as the pretrained path feeds the model
    assert hub("ACNGTACGTAC")["input_ids"] == [tiny.cls_id] + tiny.token_ids("ACNGTACGTAC")


def test_nt_truncation_at_2048_tokens_keeps_requested_end():
    five = build_encoder("nucleotide_transformer", {"source": "tiny"})
    assert five.max_len == 2048
    exact = random_rna(12282)
    assert len(five.token_ids(exact)) == 2047
    long = exact + "T" * 600
    ids5 = five.token_ids(long)
    assert len(ids5) == 2047 and ids5 == five.token_ids(exact)
    three = build_encoder("nucleotide_transformer", {"source": "tiny", "truncate": "keep_3prime"})
    ids3 = three.token_ids(long)
    assert len(ids3) == 2047 and ids3 == three.token_ids(long[-12282:])
    tokens = five.tokenize([long])
    assert tokens["input_ids"].shape == (1, 2048)
    # N-rich sequences expand to more tokens than 6-mers: the token cut still holds.
    assert len(five.token_ids("N" * 12282)) == 2047


def test_nt_spec_from_config_maps_rna_limits():
    config = {"encoders": {"nucleotide_transformer": {}}, "rna": {"max_nt": 12282}}
    spec = spec_from_config(config, "nucleotide_transformer")
    assert spec["max_len"] == 2048 and spec["truncate"] == "keep_5prime"
    config = {"encoders": {"esm2": {}}, "protein": {"max_aa": 500}}
    assert spec_from_config(config, "esm2")["max_len"] == 500


def test_nt_dna_takes_genome_tokens():
    encoder = build_encoder("nt_dna", {"source": "tiny"})
    assert encoder.modality == "dna"
    # NN ACGTAC NN ACGT: the crop is the 2 whole 6-mers' 12 bp around the TSS (base 7, the
    # last C of ACGTAC), N ACGTAC NN ACG; NT reads N ACGTAC N N A C G, and the 3 tokens
    # centred on the TSS token are kept
    tokens = np.array([[4, 4, 0, 1, 2, 3, 0, 1, 4, 4, 0, 1, 2, 3]], dtype=np.uint8)
    ids = encoder.tokenize(tokens)["input_ids"][0].tolist()
    vocab = {t: i for i, t in enumerate(nt_vocabulary())}
    n, cls = vocab["N"], vocab["<cls>"]
    assert ids == [cls, n, vocab["ACGTAC"], n]


def test_nt_dna_crops_a_long_window_around_its_centre():
    encoder = build_encoder("nt_dna", {"source": "tiny", "max_len": 3})  # CLS + 2 6-mers
    window = np.full((1, 30), 4, dtype=np.uint8)  # N everywhere but the centre 12 nt
    window[0, 9:21] = [0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3]  # AAAAAA TTTTTT
    ids = encoder.tokenize(window)["input_ids"][0].tolist()
    vocab = {t: i for i, t in enumerate(nt_vocabulary())}
    assert ids == [vocab["<cls>"], vocab["AAAAAA"], vocab["TTTTTT"]]


def dna_window(letters: str) -> np.ndarray:
    """One DNA window (1, L) of genome tokens (A=0, C=1, G=2, T=3, N=4) from its letters."""
    return np.array([["ACGTN".index(c) for c in letters]], dtype=np.uint8)


def nt_dna_tokens(encoder, letters: str) -> list[str]:
    """The tokens (no CLS) the NT DNA encoder feeds its model for the window ``letters``."""
    inverse = {i: t for t, i in encoder.vocab.items()}
    ids = encoder.tokenize(dna_window(letters))["input_ids"][0].tolist()
    assert ids[0] == encoder.cls_id
    return [inverse[i] for i in ids[1:]]


def test_nt_dna_ns_upstream_keep_the_tss_token_in_the_middle():
    # The reviewer's case at full size: a 196,608 bp window laid out like chr1 DDX11L1 (TSS
    # 11,869 bp into the contig, whose first 10,000 bp are N, the window padded with N
    # before the contig's start). NT reads each N as a token: cut from the 5' end, the
    # 2,047 tokens were all N and the TSS (token 4,583 of the crop) was not read at all.
    encoder = build_encoder("nt_dna", {"source": "tiny"})
    budget = encoder.max_len - 1  # 2047
    width, tss = 196_608, 11_869
    rng = np.random.default_rng(3)
    letters = list("N" * (width // 2 - tss + 10_000))
    letters += list(rng.choice(list("ACGT"), width - len(letters)))
    window = "".join(letters)
    tokens = nt_dna_tokens(encoder, window)
    assert len(tokens) == budget
    # the 6-mer frame restarts where the Ns end; the TSS (the window's centre base) lies in
    # the 6-mer of that frame that covers it, which must sit in the middle slot
    n_end = len(window) - len(window.lstrip("N"))
    tss_kmer_start = n_end + (width // 2 - n_end) // 6 * 6
    assert tokens[budget // 2] == window[tss_kmer_start : tss_kmer_start + 6]
    after = [window[tss_kmer_start + 6 * k : tss_kmer_start + 6 * k + 6] for k in range(1024)]
    assert tokens[budget // 2 :] == after  # then 6-mers on to the end
    assert set(tokens[: budget // 2 - (tss_kmer_start - n_end) // 6]) == {"N"}
    assert encoder.recentred_windows == 1 and encoder.dna_windows == 1
    # positional pooling's TSS slot (dna_crop_bins // 2) reads the TSS token
    emb = torch.arange(budget, dtype=torch.float32)[:, None]
    crop = pool_positional(emb, budget, "dna", {"dna_crop_bins": 128})
    assert crop[64, 0].item() == budget // 2


def test_nt_dna_without_ns_is_the_crops_6mers_unchanged():
    encoder = build_encoder("nt_dna", {"source": "tiny", "max_len": 21})  # 20 tokens, 120 bp
    rng = np.random.default_rng(4)
    window = "".join(rng.choice(list("ACGT"), 401))
    left = (401 - 120) // 2
    want = [window[left + 6 * k : left + 6 * k + 6] for k in range(20)]
    assert nt_dna_tokens(encoder, window) == want
    assert encoder.recentred_windows == 0
    # a window shorter than the crop: its whole 6-mers around the TSS (base 25), 24 bp each
    # side, not 8 6-mers and 2 letters from its start (the TSS token 4 of 10, left of 5)
    short = window[:50]
    assert nt_dna_tokens(encoder, short) == [short[i : i + 6] for i in range(1, 49, 6)]
    assert encoder.recentred_windows == 0 and encoder.dna_windows == 2


def test_nt_dna_ns_downstream_keep_the_tss_token_in_the_middle():
    encoder = build_encoder("nt_dna", {"source": "tiny", "max_len": 21})  # 20 tokens, 120 bp
    rng = np.random.default_rng(5)
    width = 400
    window = "".join(rng.choice(list("ACGT"), width // 2 + 20)) + "N" * (width // 2 - 20)
    left = (width - 120) // 2
    tokens = nt_dna_tokens(encoder, window)
    # the frame is the crop's: the TSS 6-mer is the 11th, in the middle slot (index 10)
    # (80 bases of the crop: 13 6-mers and 2 letters, then Ns), as before the fix
    want = [window[left + 6 * k : left + 6 * k + 6] for k in range(13)]
    want += list(window[left + 78 : left + 80]) + ["N"] * 5
    assert tokens == want
    tss_kmer = left + (width // 2 - left) // 6 * 6
    assert tokens[10] == window[tss_kmer : tss_kmer + 6]


def test_nt_dna_ns_in_a_short_window_trim_the_n_side_to_centre_the_tss():
    encoder = build_encoder("nt_dna", {"source": "tiny", "max_len": 21})  # 20 tokens, 120 bp
    rng = np.random.default_rng(6)
    window = "N" * 40 + "".join(rng.choice(list("ACGT"), 40))  # 80 bp: TSS base 40
    tokens = nt_dna_tokens(encoder, window)
    # the crop is the 13 6-mers' 78 bp around the TSS, [1, 79): 39 N tokens, then 6 6-mers
    # and 3 letters: the TSS token (the first 6-mer) keeps as many tokens after it as before
    # it, so it sits at len // 2 as pooling expects
    assert tokens[len(tokens) // 2] == window[40:46]
    assert tokens == ["N"] * 8 + [window[40 + 6 * k : 46 + 6 * k] for k in range(6)] + list(
        window[76:79]
    )
    assert encoder.recentred_windows == 1


def test_nt_dna_few_tokens_before_the_tss_keep_as_many_after_it():
    """Ns downstream of a short window's TSS, few 6-mers upstream: the TSS token (the first
    N, token 5) can have only 5 tokens before it, so it keeps 5 after it (11 tokens, the TSS
    token at len // 2 where pooling reads it), not the budget's 20 with the TSS at slot 5;
    and the window counts as re-centred, though its first token is kept."""
    encoder = build_encoder("nt_dna", {"source": "tiny", "max_len": 21})  # 20 tokens, 120 bp
    rng = np.random.default_rng(8)
    window = "".join(rng.choice(list("ACGT"), 30)) + "N" * 30  # 60 bp: TSS base 30, an N
    tokens = nt_dna_tokens(encoder, window)
    assert tokens == [window[6 * k : 6 * k + 6] for k in range(5)] + ["N"] * 6
    assert tokens[len(tokens) // 2] == "N"
    assert encoder.recentred_windows == 1 and encoder.dna_windows == 1


def tss_token_index(window: str, tokens: list[str]) -> int:
    """Which of ``tokens`` (a contiguous run of the window's letters, 6-mers or single
    letters) covers the window's centre base ``len(window) // 2``, the TSS: found by where
    their letters lie in the window, not by the encoder's arithmetic."""
    text = "".join(tokens)
    start = window.find(text)
    assert start >= 0 and window.find(text, start + 1) == -1  # one place in the window
    tss = len(window) // 2
    for index, token in enumerate(tokens):
        if start <= tss < start + len(token):
            return index
        start += len(token)
    raise AssertionError("no token covers the TSS")


NT_TSS_CASES = {
    # name: (max_len, upstream N, window bp); budget = max_len - 1 tokens
    # shorter than the crop, no N: 2,048 bp (the demo) = 341 6-mers + 2 letters; the 2
    # letters were read as tokens after the last 6-mer, the TSS token one left of the middle
    "short, remainder 2, odd 6-mers (demo)": (2048, 0, 2048),
    "short, remainder 4, odd 6-mers": (21, 0, 46),
    "short, remainder 1, odd 6-mers": (21, 0, 43),
    "short, remainder 5, even 6-mers": (21, 0, 101),
    "short, whole 6-mers, even count": (21, 0, 96),
    "short, whole 6-mers, odd count": (21, 0, 90),
    # longer than the crop, no N: the budget's 6-mers, odd (2,047) and even (20) counts
    "long, odd budget": (2048, 0, 20_001),
    "long, even budget": (21, 0, 401),
    "long, even budget, odd window": (21, 0, 400),
    # with N upstream (NT's frame restarts after the Ns): short and long
    "short, N upstream, remainder 2": (2048, 100, 2048),
    "short, N near the TSS": (21, 41, 86),
    "long, N upstream, odd budget": (2048, 8_000, 20_001),
    "long, N upstream, even budget": (21, 150, 401),
    # under 6 bp: no 6-mer, read letter by letter, still at most the budget's tokens
    "under 6 bp, more letters than the budget": (3, 0, 5),
}


@pytest.mark.parametrize("case", list(NT_TSS_CASES), ids=list(NT_TSS_CASES))
def test_nt_dna_tss_token_is_the_middle_one(case):
    """The token holding the window's centre base sits at len(tokens) // 2, the token
    positional pooling reads as the TSS (slot dna_crop_bins // 2), for windows shorter and
    longer than the crop, even and odd token counts, with and without N. A window shorter
    than the crop put its last window % 6 letters after the 6-mers as single tokens: the
    demo's 2,048 bp gave 343 tokens with the TSS in token 170, one left of 171."""
    max_len, n_up, width = NT_TSS_CASES[case]
    encoder = build_encoder("nt_dna", {"source": "tiny", "max_len": max_len})
    rng = np.random.default_rng(width + n_up)
    window = "N" * n_up + "".join(rng.choice(list("ACGT"), width - n_up))
    tokens = nt_dna_tokens(encoder, window)
    assert 0 < len(tokens) <= max_len - 1
    assert tss_token_index(window, tokens) == len(tokens) // 2
    emb = torch.arange(len(tokens), dtype=torch.float32)[:, None]
    for crop in (4, 5):  # what pooling keeps around the TSS reads it at slot crop // 2
        if len(tokens) > crop:
            slots = pool_positional(emb, len(tokens), "dna", {"dna_crop_bins": crop})
            assert slots[crop // 2, 0].item() == len(tokens) // 2
    # whole 6-mers, 3 * count bp each side of the TSS (registry.nt_dna_crop)
    if not n_up and width >= 6:
        assert {len(t) for t in tokens} == {6}
        tss = width // 2
        assert window.index("".join(tokens)) == tss - 3 * len(tokens)


def test_nt_dna_hub_tokenizer_gives_the_same_centred_tokens(tmp_path):
    hub = nt_hub_tokenizer(tmp_path / "nt")
    tiny = build_encoder("nt_dna", {"source": "tiny", "max_len": 21})
    with_hub = build_encoder("nt_dna", {"source": "tiny", "max_len": 21})
    with_hub.tokenizer = hub
    rng = np.random.default_rng(7)
    for n_up in (0, 3, 37, 150):
        letters = "N" * n_up + "".join(rng.choice(list("ACGTN"), 300 - n_up, p=[0.24] * 4 + [0.04]))
        window = dna_window(letters)
        assert (
            with_hub.tokenize(window)["input_ids"].tolist()
            == tiny.tokenize(window)["input_ids"].tolist()
        )


# --- missing sequences and padding ---------------------------------------------------


@pytest.mark.parametrize("name", ["esm2", "nucleotide_transformer"])
def test_missing_sequence_is_all_false_mask_and_never_encoded(name):
    encoder = build_encoder(name, {"source": "tiny"})
    make = random_protein if name == "esm2" else random_rna
    seen = []
    model = encoder.model if name == "esm2" else encoder.backbone
    model.register_forward_hook(lambda m, args, kwargs, out: seen.append(1), with_kwargs=True)
    hook_rows = []
    model.register_forward_pre_hook(
        lambda m, args, kwargs: hook_rows.append(
            (args[0] if args else kwargs["input_ids"]).shape[0]
        ),
        with_kwargs=True,
    )
    batch = [make(30), None, make(12), ""]
    emb, mask = encoder(**encoder.tokenize(batch))
    assert hook_rows == [2]
    assert mask.sum(1).tolist()[1] == 0 and mask.sum(1).tolist()[3] == 0
    assert emb[1].abs().sum() == 0 and emb[3].abs().sum() == 0
    emb, mask = encoder(**encoder.tokenize([None, None]))
    assert hook_rows == [2] and not mask.any() and emb.shape[0] == 2


@pytest.mark.parametrize("name", ["esm2", "nucleotide_transformer"])
def test_padding_does_not_change_embeddings(name):
    encoder = build_encoder(name, {"source": "tiny"}).eval()
    make = random_protein if name == "esm2" else random_rna
    short, long = make(24), make(90)
    alone, mask_alone = encoder(**encoder.tokenize([short]))
    both, mask_both = encoder(**encoder.tokenize([long, short]))
    n = int(mask_alone.sum())
    assert int(mask_both[1].sum()) == n
    torch.testing.assert_close(both[1, :n], alone[0, :n], atol=1e-5, rtol=1e-4)
    assert both[1, n:].abs().sum() == 0


def test_esm2_representations_drop_bos_and_eos():
    encoder = build_encoder("esm2", {"source": "tiny"}).eval()
    seq = random_protein(17)
    emb, mask = encoder(**encoder.tokenize([seq]))
    _, _, tokens = encoder.alphabet.get_batch_converter()([("p", seq)])
    reps = encoder.model(tokens, repr_layers=[2])["representations"][2]
    assert mask.sum() == 17
    torch.testing.assert_close(emb[0], reps[0, 1:18])


def test_esm2_truncates_to_max_len_residues():
    encoder = build_encoder("esm2", {"source": "tiny", "max_len": 50})
    tokens = encoder.tokenize([random_protein(80)])
    assert tokens["tokens"].shape == (1, 52) and tokens["lengths"].tolist() == [50]


def test_esm2_sdpa_attention_gives_eager_embeddings_and_gradients():
    # attention: sdpa (fair-esm's self-attention product through torch's fused SDPA): the same
    # state dict, the same embeddings of a padded batch and the same gradients, fine-tuned
    from isoflow.model.encoders.esm2 import SdpaMultiheadAttention

    spec = {"source": "tiny", "finetune_last": -1}
    eager = build_encoder("esm2", spec).eval()
    sdpa = build_encoder("esm2", {**spec, "attention": "sdpa"}).eval()
    assert sdpa.state_dict().keys() == eager.state_dict().keys()
    sdpa.load_state_dict(eager.state_dict())
    layers = [layer.self_attn for layer in sdpa.model.layers]
    assert all(type(a) is SdpaMultiheadAttention for a in layers)
    assert not any(type(layer.self_attn) is SdpaMultiheadAttention for layer in eager.model.layers)
    tokens = eager.tokenize([random_protein(40), random_protein(9), None, random_protein(23)])
    results = []
    for encoder in (eager, sdpa):
        emb, mask = encoder(**tokens)
        loss = (emb[mask] ** 2).mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
        results.append((emb.detach(), mask, grads))
    (emb, mask, grads), (emb_s, mask_s, grads_s) = results
    assert torch.equal(mask, mask_s)
    torch.testing.assert_close(emb_s, emb, rtol=1e-5, atol=1e-6)
    assert grads.keys() == grads_s.keys() and len(grads) > 0
    for key in grads:
        torch.testing.assert_close(grads_s[key], grads[key], rtol=1e-4, atol=1e-6)
    # what needs the per-head weights still gets them, from fair-esm's own forward
    batch = tokens["tokens"][[0, 1, 3]]
    with torch.no_grad():
        want = eager.model(batch, need_head_weights=True)["attentions"]
        got = sdpa.model(batch, need_head_weights=True)["attentions"]
    torch.testing.assert_close(got, want)


def test_esm2_attention_is_eager_or_sdpa():
    # (on another family the config check stops it: tests/unit/test_config.py)
    with pytest.raises(InputError, match="ESM-2 attention is one of"):
        build_encoder("esm2", {"source": "tiny", "attention": "flash"})


# --- freezing ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_trainable_last(name):
    encoder = build_encoder(name, {"source": "tiny"})
    assert not any(p.requires_grad for p in encoder.parameters())  # finetune_last: 0
    blocks = encoder.blocks()
    encoder.trainable_last(1)
    last = {id(p) for p in blocks[-1].parameters()}
    tail = {id(p) for m in encoder.tail() for p in m.parameters()}
    trainable = {id(p) for p in encoder.parameters() if p.requires_grad}
    assert trainable == last | tail
    encoder.trainable_last(-1)
    assert all(p.requires_grad for p in encoder.parameters())


def _tiny_input(encoder):
    if encoder.modality == "dna":
        return encoder.tokenize([RNG.integers(0, 4, 2048).astype(np.uint8) for _ in range(2)])
    if encoder.modality == "rna":
        return encoder.tokenize([random_rna(90), random_rna(40)])
    return encoder.tokenize(["MKTAYIAKQRQISFVKSHFSRQ", "MKVLAAGIV"])


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(name):
    """Fine-tuned whole, in train mode (dropout where the tiny config has it), with one seed:
    the checkpointed encoder's loss equals the plain one's and every gradient agrees; and the
    blocks really are recomputed (each runs twice per step)."""
    spec = {"source": "tiny", "finetune_last": -1}
    plain = build_encoder(name, spec).train()
    checkpointed = build_encoder(name, {**spec, "gradient_checkpointing": True}).train()
    checkpointed.load_state_dict(plain.state_dict())
    tokens = _tiny_input(plain)
    calls = []  # calls of the first block's submodules (a recomputation calls them again)
    block = checkpointed.blocks()[0]
    for module in block.modules():
        if module is not block:
            module.register_forward_hook(lambda *_: calls.append(1))
    results = []
    for encoder in (plain, checkpointed):
        torch.manual_seed(7)
        emb, mask = encoder(**tokens)
        loss = (emb[mask] ** 2).mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=0)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 0
    for key in grads:
        torch.testing.assert_close(grads_ckpt[key], grads[key], rtol=1e-5, atol=1e-7)
    with_grad = len(calls)
    with torch.no_grad():  # no recording, no recomputation
        calls.clear()
        checkpointed(**tokens)
    # forward, then recomputed in the backward (up to the last activation it needs: torch
    # stops a non-reentrant recomputation early)
    assert len(calls) > 0 and with_grad > len(calls)


def test_frozen_encoder_stays_in_eval_mode():
    encoder = build_encoder("esm2", {"source": "tiny", "finetune_last": 0})
    encoder.train()
    assert not any(m.training for m in encoder.model.modules())
    encoder.trainable_last(-1).train()
    assert encoder.model.training


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_frozen_part_of_a_partly_trained_encoder_behaves_as_at_inference(name):
    """finetune_last: 1 trains the last block and the tail; everything else is frozen and,
    in train mode, in eval mode (no dropout; BatchNorm keeps its running statistics: the
    frozen BatchNorms of Enformer and Borzoi updated them at every step before)."""
    encoder = build_encoder(name, {"source": "tiny", "finetune_last": 1})
    blocks = encoder.blocks()
    trained = [blocks[-1], *encoder.tail()]
    inside = {id(sub) for module in trained for sub in module.modules()}
    holders = {id(m) for m in encoder.modules() if any(id(s) in inside for s in m.modules())}
    encoder.train()
    for module_name, module in encoder.named_modules():
        if id(module) in inside or id(module) in holders:
            assert module.training, module_name
        else:
            assert not module.training, module_name
    norms = [
        m
        for m in encoder.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in inside
    ]
    before = [(m.running_mean.clone(), m.num_batches_tracked.clone()) for m in norms]
    encoder(**_tiny_input(encoder))
    for norm, (mean, tracked) in zip(norms, before, strict=True):
        assert torch.equal(norm.running_mean, mean) and torch.equal(
            norm.num_batches_tracked, tracked
        )
    if name in ("enformer", "borzoi"):
        assert norms  # the families with BatchNorm outside their last block
    encoder.eval()
    assert not any(m.training for m in encoder.modules())
    encoder.trainable_last(-1).train()
    assert all(m.training for m in encoder.modules())


def test_gradients_reach_the_last_block_only():
    encoder = build_encoder("nucleotide_transformer", {"source": "tiny", "finetune_last": 1})
    emb, mask = encoder(**encoder.tokenize([random_rna(60)]))
    emb[mask].sum().backward()
    first = encoder.blocks()[0]
    last = encoder.blocks()[-1]
    assert all(p.grad is None for p in first.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in last.parameters())


# --- pretrained loading on tiny checkpoints in the real layout, offline --------------


def _same_output(a, b, batch):
    a.eval()
    b.eval()
    ea, ma = a(**a.tokenize(batch))
    eb, mb = b(**b.tokenize(batch))
    assert torch.equal(ma, mb)
    torch.testing.assert_close(ea, eb)


@pytest.mark.slow
def test_enformer_pretrained_roundtrip(tmp_path, offline):
    tiny = random_encoder("enformer")
    # enformer-pytorch's own save; safetensors refuses its shared tensors.
    tiny.model.save_pretrained(tmp_path / "enformer", safe_serialization=False)
    loaded = build_encoder("enformer", {"source": "pretrained", "path": tmp_path / "enformer"})
    _same_output(tiny, loaded, dna_batch(2, 2048))


@pytest.mark.slow
def test_borzoi_pretrained_roundtrip_drops_track_heads(tmp_path, offline):
    from borzoi_pytorch import Borzoi

    hparams = dict(dim=64, depth=1, heads=2, attn_dim_key=16, attn_dim_value=32, bins_to_return=16)
    torch.manual_seed(0)
    raw = Borzoi.from_hparams(**hparams)  # with the human head, as the published weights
    raw.save_pretrained(tmp_path / "borzoi")
    spec = {"source": "pretrained", "path": tmp_path / "borzoi"}
    with pytest.raises(InputError, match="reads 524,288 bp windows, got 2,048"):
        loaded = build_encoder("borzoi", spec)
        loaded(**loaded.tokenize(dna_batch(1, 2048)))
    loaded = build_encoder("borzoi", {**spec, "input_length": 2048})
    assert not hasattr(loaded.model, "human_head")
    raw.eval()
    loaded.eval()
    tokens = loaded.tokenize(dna_batch(1, 2048))
    emb, _ = loaded(**tokens)
    x = one_hot_dna(tokens["tokens"]).transpose(1, 2)
    torch.testing.assert_close(emb, raw.get_embs_after_crop(x).transpose(1, 2))


def test_nt_pretrained_roundtrip_runs_snapshot_code_offline(tmp_path, offline):
    folder = tmp_path / "nt"
    tiny, mlm = save_tiny_nt_snapshot(folder)
    loaded = build_encoder("nucleotide_transformer", {"source": "pretrained", "path": folder})
    assert type(loaded.backbone.encoder).__module__ == "transformers.models.esm.modeling_esm"
    assert loaded.vocab == {t: i for i, t in enumerate(nt_vocabulary())}
    assert loaded.tokenizer is not None  # the folder's own tokenizer tokenizes
    mixed = "acgtNNRYacgtaGGCATTACGUUA" * 3
    assert loaded.token_ids(mixed) == tiny.token_ids(mixed)
    tiny.backbone = mlm.esm
    _same_output(tiny, loaded, [random_rna(100), None, random_rna(7)])


def test_esm2_pretrained_roundtrip(tmp_path, offline):
    tiny = save_tiny_esm2(tmp_path / "esm2")
    loaded = build_encoder("esm2", {"source": "pretrained", "path": tmp_path / "esm2"})
    _same_output(tiny, loaded, [random_protein(40), None, random_protein(5)])


def test_pretrained_missing_folder_says_run_download(tmp_path):
    with pytest.raises(InputError, match="download_encoders"):
        build_encoder("esm2", {"source": "pretrained", "path": tmp_path / "none"})


@pytest.mark.parametrize(
    "name",
    # Borzoi's tiny config is still ~34 M parameters (fixed conv tower): slow.
    [pytest.param(n, marks=pytest.mark.slow) if n == "borzoi" else n for n in sorted(ENCODERS)],
)
def test_every_parameter_gets_a_gradient(name):
    """No dead parameters (unused track heads): DDP and optimizers see only what is used."""
    encoder = build_encoder(name, {"source": "tiny", "finetune_last": -1}).eval()
    emb, mask = encoder(**encoder.tokenize(batch_of(encoder.modality)))
    emb[mask].pow(2).mean().backward()
    unused = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert unused == []


# --- the registry and the family files -------------------------------------------------


def test_every_family_file_is_registered_and_every_registered_family_has_a_file():
    files = {p.stem for p in Path(encoders_package.__file__).parent.glob("*.py")}
    assert {kind for kind, _ in ENCODERS.values()} == files - {"__init__", "base"}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_registered_encoder_builds_from_its_family_with_the_declared_modality(name):
    kind, modality = ENCODERS[name]
    cls = family(kind)
    assert modality in cls.MODALITIES
    encoder = build_encoder(name, {"source": "tiny"})
    assert type(encoder) is cls and encoder.modality == modality
    emb, mask = encoder(**encoder.tokenize(batch_of(modality)))
    assert emb.shape[0] == 1 and emb.shape[2] == encoder.dim and mask.shape == emb.shape[:2]
    assert mask.any() and torch.isfinite(emb).all()


def test_a_modality_the_family_cannot_read_fails_with_one_line():
    with pytest.raises(InputError, match="enformer encoders read dna, not rna"):
        build_encoder("enformer_rna", {"class": "enformer", "modality": "rna"})
    with pytest.raises(InputError, match="nucleotide_transformer encoders read rna or dna, not"):
        build_encoder("nt_protein", {"class": "nt_dna", "modality": "protein"})


# A throw-away family, written as its own file: the whole of what a new family needs besides
# its registry line (docs/encoders.md, "Adding an encoder family").
TOY_FAMILY = '''"""Toy: a token embedding and residual tanh layers over a DNA window."""

from pathlib import Path

import torch
from torch import nn

from isoflow.model.encoders.base import DnaEncoder


class ToyEncoder(DnaEncoder):
    TINY_HPARAMS = dict(dim=8, depth=2)
    REAL_HPARAMS = dict(dim=256, depth=12)

    def __init__(self, dim, depth):
        super().__init__()
        self.embed = nn.Embedding(5, dim)
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.dim = dim

    @classmethod
    def from_hparams(cls, hparams, modality, spec):
        return cls(**hparams)

    @classmethod
    def from_pretrained(cls, path, modality, spec):
        saved = torch.load(Path(path) / "toy.pt", weights_only=True)
        encoder = cls(**saved["hparams"])
        encoder.load_state_dict(saved["state"])
        return encoder

    def blocks(self):
        return list(self.layers)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = x + torch.tanh(layer(x))
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


FAMILY = ToyEncoder
'''


@pytest.fixture
def toy_family(tmp_path, monkeypatch):
    """``toy.py`` in a folder the encoders package searches, plus its registry line."""
    folder = tmp_path / "families"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY_FAMILY)
    monkeypatch.setattr(encoders_package, "__path__", [*encoders_package.__path__, str(folder)])
    monkeypatch.setitem(ENCODERS, "toy", ("toy", "dna"))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("isoflow.model.encoders.toy", None)


def test_a_new_family_is_one_file_and_its_registry_lines(toy_family, tmp_path, monkeypatch):
    encoder = build_encoder("toy", {"source": "tiny"})
    assert type(encoder).__name__ == "ToyEncoder" and encoder.modality == "dna"
    emb, mask = encoder(**encoder.tokenize(dna_batch(2, 64)))
    assert emb.shape == (2, 64, 8) and mask.all()
    # The base's freezing, seeding and sizes apply to it unchanged.
    assert not any(p.requires_grad for p in encoder.parameters())
    again = build_encoder("toy", {"source": "tiny"})
    pairs = zip(encoder.parameters(), again.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert random_encoder("toy", real_size=True).dim == 256
    encoder.trainable_last(1)
    assert [p.requires_grad for p in encoder.parameters()] == [False, False, False, True, True]
    # Pretrained weights from a folder, through the same build_encoder.
    weights = tmp_path / "weights"
    weights.mkdir()
    state = {"hparams": encoder.TINY_HPARAMS, "state": encoder.state_dict()}
    torch.save(state, weights / "toy.pt")
    loaded = build_encoder("toy", {"source": "pretrained", "path": weights})
    _same_output(encoder, loaded, dna_batch(2, 64))
    # The config accepts it as a class, with no schema edit, and names it in the workflow.
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["encoders"]["my_toy"] = {"class": "toy", "hparams": {"dim": 4}}
    check_config(config)
    assert spec_from_config(config, "my_toy") == {
        **ENCODER_DEFAULTS,
        "class": "toy",
        "hparams": {"dim": 4},
    }
    assert build_encoder("my_toy", spec_from_config(config, "my_toy")).dim == 4
    with pytest.raises(InputError, match="toy encoders read dna, not protein"):
        build_encoder("toy", {"modality": "protein"})
    # The workflow sizes the jobs that load it (snakemake -n evaluates both) from its measured
    # ENCODER_HOST_MB line: without one, one line naming the table, not a bare KeyError.
    from isoflow import workflow

    config["experiments"] = [{"name": "toy_run", "modalities": ["dna"], "dna_encoder": "my_toy"}]
    job = SimpleNamespace(encoder="my_toy")
    runs = [{**workflow.EXPERIMENT_DEFAULTS, **config["experiments"][0]}]
    for size in (
        lambda: workflow.embed_mem_mb(job, config),
        lambda: workflow.bundle_mem_mb(config, runs),
    ):
        with pytest.raises(
            InputError, match=r"registry.py:ENCODER_HOST_MB: no entry for encoder family 'toy'"
        ):
            size()
    monkeypatch.setitem(ENCODER_HOST_MB, "toy", {"tiny": 300, "real": 3000, "weights": 1000})

    def rounded(mb):  # 1.25 margin, rounded up to 100 MB (no GPU in the demo)
        return math.ceil(math.ceil(1.25 * mb) / 100) * 100

    assert workflow.embed_mem_mb(job, config) == rounded(1024 + 300)  # embed.shard_mb + tiny
    loaded = IMPORT_MB + (300 - IMPORT_MB) + workflow.BUNDLE_JOB_MB
    assert workflow.bundle_mem_mb(config, runs) == rounded(loaded)
    # The embed rules' params hold its packages' versions (workflow.embed_packages) from its
    # FAMILY_PACKAGES line: without one, one line naming the table.
    with pytest.raises(
        InputError, match=r"registry.py:FAMILY_PACKAGES: no entry for encoder family 'toy'"
    ):
        workflow.embed_packages(job, config)
    monkeypatch.setitem(FAMILY_PACKAGES, "toy", ("einops",))
    assert set(workflow.embed_packages(job, config)) == {"einops", "torch"}


def test_the_borzoi_excerpt_in_the_docs_is_the_file():
    """docs/encoders.md's worked example quotes borzoi.py; `# ...` lines mark the gaps."""
    docs = (REPO / "docs/encoders.md").read_text()
    section = docs.split("## Adding an encoder family", 1)[1]
    excerpt = section.split("```python\n", 1)[1].split("```", 1)[0]
    source = (REPO / "isoflow/model/encoders/borzoi.py").read_text()
    chunks, chunk = [], []
    for line in excerpt.splitlines():
        if line.strip().startswith("# ..."):
            chunks.append("\n".join(chunk).strip("\n"))
            chunk = []
        else:
            chunk.append(line)
    chunks.append("\n".join(chunk).strip("\n"))
    assert len(chunks) == 4
    for text in chunks:
        assert text in source, text


def test_nt_remote_code_that_cannot_import_is_one_line(tmp_path, offline):
    """An NT-v2 snapshot whose remote modeling code imports a name this transformers release
    no longer has (older snapshots did, before the Hub fixed their imports): one line naming
    the folder, the failing import and the fix, not a raw ImportError from deep inside."""
    from isoflow.errors import InputError
    from isoflow.model.encoders.nucleotide_transformer import NucleotideTransformerEncoder

    config = {
        "model_type": "esm",
        "architectures": ["EsmForMaskedLM"],
        "auto_map": {
            "AutoConfig": "esm_config.EsmConfig",
            "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "esm_config.py").write_text(
        "from transformers import PretrainedConfig\n\n\n"
        "class EsmConfig(PretrainedConfig):\n    model_type = 'esm'\n"
    )
    (tmp_path / "modeling_esm.py").write_text(
        "from transformers.pytorch_utils import a_name_removed_long_ago  # noqa: F401\n"
        "from transformers import PreTrainedModel\n\n\n"
        "class EsmForMaskedLM(PreTrainedModel):\n    pass\n"
    )
    with pytest.raises(InputError) as err:
        NucleotideTransformerEncoder.from_pretrained(tmp_path, "rna", {})
    line = str(err.value)
    assert line.startswith(f"{tmp_path}:modeling code: the snapshot's remote code does not import")
    assert "a_name_removed_long_ago" in line and "newer revision" in line
    assert "\n" not in line


@pytest.mark.parametrize(
    "name, seqs",
    [
        ("esm2", ["MKTAYIAKQR", "MAV", "MKVLA"]),
        ("nucleotide_transformer", ["ACGTACGTACGTAAC", "ACGTAC", "ACGTNNACGTTG"]),
    ],
)
def test_a_missing_row_changes_nothing_for_the_present_ones(name, seqs):
    # A batch with every row present takes the path without indexing; one with a missing
    # row takes the present rows by number. Both give the same embeddings, masks and
    # gradients for the present rows, and zeros for the missing one.
    results = []
    for batch in (seqs, [seqs[0], None, *seqs[1:]]):
        encoder = build_encoder(name, {"source": "tiny", "finetune_last": -1}).train()
        emb, mask = encoder(**encoder.tokenize(batch))
        emb.sum().backward()
        grads = [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
        results.append((emb.detach(), mask, grads))
    (full, full_mask, full_grads), (gap, gap_mask, gap_grads) = results
    present = [0, 2, 3]
    torch.testing.assert_close(gap[present], full)
    assert torch.equal(gap_mask[present], full_mask)
    assert not gap[1].any() and not gap_mask[1].any()
    assert len(gap_grads) == len(full_grads) > 0
    for a, b in zip(gap_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("family", sorted({kind for kind, _ in ENCODERS.values()}))
def test_a_family_declares_the_packages_its_file_imports(family):
    """The embedding store's digest holds the versions of a family's ``PACKAGES``
    (isoflow.embed.package_versions): a package the family's file imports and does not
    declare would be upgraded under its stored caches unseen. torch is in the digest by its
    own version; numpy only moves tokens and indices."""
    import ast
    from importlib import metadata

    module = importlib.import_module(f"isoflow.model.encoders.{family}")
    tree = ast.parse(Path(module.__file__).read_text())
    roots = {
        alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    roots |= {
        n.module.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module
    }
    roots -= set(sys.stdlib_module_names) | {"torch", "numpy", "isoflow", "__future__"}
    distributions = metadata.packages_distributions()
    imported = {d for root in roots for d in distributions.get(root, [root])}
    assert imported and imported <= set(module.FAMILY.PACKAGES), (imported, module.FAMILY.PACKAGES)
