"""Pretrained sequence encoders behind one interface (DESIGN.md "Model inputs").

Every encoder is an ``nn.Module`` with

- ``.dim``: width of the output embedding, ``.modality``: ``dna``, ``rna`` or ``protein``;
- ``.tokenize(batch) -> dict[str, Tensor]``: DNA takes uint8 token arrays (``A=0, C=1, G=2,
  T=3, N=4`` as made by :mod:`isoflow.genome`); RNA and protein take ``list[str]`` where
  ``None`` (or ``""``) means the modality is missing for that item;
- ``forward(**tokens) -> (emb (B, L, D) float, mask (B, L) bool, True = real token)``.
  A missing item is an all-False mask row and zeros: the model never runs on it;
- ``.trainable_last(n)``: freeze all but the last ``n`` blocks (0 = frozen, -1 = all).

``build_encoder(name, spec)`` builds one from a config spec::

    {source: tiny | pretrained, path: resources/models/<name>, repo: ..., revision: main,
     hparams: {...}, max_len: ..., truncate: keep_5prime | keep_3prime, finetune_last: 0}

``tiny`` builds the same classes with small random weights (seeded by ``spec["seed"]``,
default 0, so two processes build identical tiny encoders); ``pretrained`` loads the files
that :mod:`isoflow.weights` downloaded into ``path``, without network access.
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isoflow.alphabet import DNA_LETTER_CODES, TRUNCATE_MODES, is_missing, truncate
from isoflow.errors import InputError
from isoflow.model.registry import encoder_kind

# Tiny sizes that run in milliseconds on a CPU (Enformer's dim/heads must be a multiple of 6,
# and dim_divisible_by=16: the default 128 breaks small dims); a spec's ``hparams`` override
# them key by key.
TINY_HPARAMS: dict[str, dict[str, Any]] = {
    "enformer": dict(
        dim=96,
        depth=2,
        heads=2,
        output_heads=dict(human=30),
        target_length=8,
        dim_divisible_by=16,
        attn_dim_key=16,
        dropout_rate=0.0,
        attn_dropout=0.0,
        pos_dropout=0.0,
    ),
    "borzoi": dict(
        dim=64,
        depth=1,
        heads=2,
        attn_dim_key=16,
        attn_dim_value=32,
        bins_to_return=16,
        dropout_rate=0.0,
        attn_dropout=0.0,
        pos_dropout=0.0,
        enable_human_head=False,
        enable_mouse_head=False,
    ),
    "nt": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    ),
    "esm2": dict(num_layers=2, embed_dim=64, attention_heads=4),
}

# Real sizes (random weights, for shape/cost checks without a download).
REAL_HPARAMS: dict[str, dict[str, Any]] = {
    # Enformer as published (EleutherAI/enformer-official-rough config).
    "enformer": dict(
        dim=1536, depth=11, heads=8, output_heads=dict(human=5313, mouse=1643), target_length=896
    ),
    # Borzoi as published (johahi/borzoi-replicate-0 config is the BorzoiConfig default).
    "borzoi": dict(enable_human_head=False, enable_mouse_head=False),
    # NT-v2 250M multi-species sizes on stock Esm layers (the real checkpoint's remote code
    # uses gated FFNs; the stock layers match its width, depth and token count).
    "nt": dict(
        hidden_size=768,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=3072,
        max_position_embeddings=2050,
    ),
    # esm2_t30_150M_UR50D.
    "esm2": dict(num_layers=30, embed_dim=640, attention_heads=20),
}

DEFAULT_MAX_LEN = {
    "nt": 2048,  # tokens including CLS: 2,047 6-mers = 12,282 nt
    "esm2": 1022,  # residues, BOS/EOS added on top
}

BORZOI_INPUT_BP = 524_288

NT_SPECIAL_TOKENS = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
NT_KMER = 6


def nt_vocabulary() -> list[str]:
    """The Nucleotide Transformer 6-mer vocabulary: 6 specials + 4,096 6-mers + A,T,C,G,N."""
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=NT_KMER)]
    return NT_SPECIAL_TOKENS + kmers + list("ATCGN")


def _merge(defaults: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(defaults)
    merged.update(override or {})
    return merged


def _dna_batch(batch: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(B, L) long tensor from a 2-D uint8 array or equal-length 1-D arrays."""
    if isinstance(batch, np.ndarray) and batch.ndim == 1:
        batch = batch[None, :]
    arrays = [np.asarray(a, dtype=np.uint8) for a in batch]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise InputError(None, None, f"DNA windows in one batch differ in length: {lengths}")
    stacked = np.stack(arrays) if arrays else np.zeros((0, 0), dtype=np.uint8)
    return torch.from_numpy(np.minimum(stacked, 4).astype(np.int64))


def one_hot_dna(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) tokens -> (B, L, 4) float one-hot; N (4) is all zeros."""
    return F.one_hot(tokens.clamp(0, 4), 5)[..., :4].float()


class Encoder(nn.Module):
    """Base class: the shared interface and freezing logic."""

    modality: str = ""
    dim: int = 0

    def __init__(self) -> None:
        super().__init__()
        self._trainable = -1

    def tokenize(self, batch) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """Repeated blocks, first to last (what ``trainable_last`` counts)."""
        raise NotImplementedError

    def tail(self) -> list[nn.Module]:
        """Modules after the last block; trainable whenever any block is."""
        return []

    def trainable_last(self, n: int) -> Encoder:
        """Freeze all but the last ``n`` blocks (0 = all frozen, -1 = all trainable)."""
        blocks = self.blocks()
        if n < -1:
            raise ValueError(f"trainable_last: n must be >= -1, got {n}")
        self._trainable = n
        if n == -1:
            self.requires_grad_(True)
            return self
        self.requires_grad_(False)
        if n > 0:
            for block in blocks[max(len(blocks) - n, 0) :]:
                block.requires_grad_(True)
            for module in self.tail():
                module.requires_grad_(True)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> Encoder:
        # A frozen encoder stays in eval mode (no dropout, fixed BatchNorm statistics)
        # even while the model around it trains.
        super().train(mode)
        if self._trainable == 0:
            for module in self.children():
                module.eval()
        return self


class _DnaEncoder(Encoder):
    modality = "dna"

    def tokenize(self, batch) -> dict[str, torch.Tensor]:
        return {"tokens": _dna_batch(batch)}


class EnformerEncoder(_DnaEncoder):
    """Enformer trunk embeddings: (B, target_length, 2 * dim), 128 bp per bin."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # The track heads are not used for embeddings: parameters that never get a gradient
        # would only cost memory and trip DDP's unused-parameter check.
        model.add_heads()
        self.model = model
        self.dim = 2 * model.dim

    def blocks(self) -> list[nn.Module]:
        return list(self.model.transformer)

    def tail(self) -> list[nn.Module]:
        return [self.model.final_pointwise]

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = one_hot_dna(tokens).to(next(self.model.parameters()).dtype)
        emb = self.model(x, return_only_embeddings=True)
        mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
        return emb, mask


class BorzoiEncoder(_DnaEncoder):
    """Borzoi embeddings before the output heads: (B, bins, dim), 32 bp per bin."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # The track heads (and the 1,920-channel conv feeding them) are not used for
        # embeddings; dropping them saves memory and leaves no parameter without a gradient.
        for head in ("human_head", "mouse_head", "final_joined_convs"):
            if hasattr(model, head):
                delattr(model, head)
        self.model = model
        self.dim = model.config.dim
        # Set for published weights: their relative-position table covers exactly this input.
        self.required_length: int | None = None

    def blocks(self) -> list[nn.Module]:
        return list(self.model.transformer)

    def tail(self) -> list[nn.Module]:
        m = self.model
        return [
            m.horizontal_conv0,
            m.horizontal_conv1,
            m.upsampling_unet1,
            m.separable1,
            m.upsampling_unet0,
            m.separable0,
        ]

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.required_length and tokens.shape[1] != self.required_length:
            raise InputError(
                None,
                "borzoi",
                f"pretrained Borzoi reads {self.required_length:,} bp windows, got "
                f"{tokens.shape[1]:,} (set dna.window: {self.required_length})",
            )
        x = one_hot_dna(tokens).to(next(self.model.parameters()).dtype).transpose(1, 2)
        emb = self.model.get_embs_after_crop(x).transpose(1, 2)
        mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
        return emb, mask


class NucleotideTransformerEncoder(Encoder):
    """Nucleotide Transformer (v2) token embeddings, CLS dropped: (B, tokens, hidden).

    Tokenization follows NT: non-overlapping 6-mers from the 5' end; a 6-mer containing
    anything but A/C/G/T, and the < 6 nt left at the 3' end, become single-nucleotide
    tokens. A sequence longer than ``max_len - 1`` tokens' worth (``(max_len - 1) * 6`` nt)
    is cut to that many nucleotides first (``truncate``: keep the 5' end by default), then
    to ``max_len - 1`` tokens in the same direction.
    """

    def __init__(
        self,
        backbone: nn.Module,
        vocab: dict[str, int],
        modality: str,
        max_len: int,
        truncate: str = "keep_5prime",
    ):
        super().__init__()
        if truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {truncate!r}")
        if getattr(backbone, "contact_head", None) is not None:
            backbone.contact_head = None  # only for predict_contacts; no unused parameters
        self.backbone = backbone
        self.vocab = vocab
        self.modality = modality
        self.max_len = max_len
        self.truncate = truncate
        self.dim = backbone.config.hidden_size
        self.pad_id = vocab["<pad>"]
        self.cls_id = vocab["<cls>"]

    def blocks(self) -> list[nn.Module]:
        return list(self.backbone.encoder.layer)

    def tail(self) -> list[nn.Module]:
        norm = getattr(self.backbone.encoder, "emb_layer_norm_after", None)
        return [norm] if norm is not None else []

    def token_ids(self, seq: str) -> list[int]:
        """Token IDs of one sequence (no CLS), truncated to ``max_len - 1`` tokens."""
        budget = self.max_len - 1
        seq = truncate(seq.upper(), budget * NT_KMER, self.truncate)
        ids: list[int] = []
        unk = self.vocab["<unk>"]
        n_id = self.vocab["N"]
        full = len(seq) - len(seq) % NT_KMER
        for start in range(0, full, NT_KMER):
            kmer = seq[start : start + NT_KMER]
            token = self.vocab.get(kmer)
            if token is not None:
                ids.append(token)
            else:
                ids.extend(self.vocab.get(base, n_id if base.isalpha() else unk) for base in kmer)
        ids.extend(self.vocab.get(base, n_id) for base in seq[full:])
        if len(ids) > budget:
            ids = ids[:budget] if self.truncate == "keep_5prime" else ids[len(ids) - budget :]
        return ids

    def tokenize(self, batch) -> dict[str, torch.Tensor]:
        if self.modality == "dna":
            arrays = _dna_batch(batch).numpy()
            # A DNA window is centred on the TSS: crop it symmetrically to what fits, never
            # from one end (keeping the 5' end of a 196 kb window would drop the TSS).
            keep = (self.max_len - 1) * NT_KMER
            if arrays.shape[1] > keep:
                left = (arrays.shape[1] - keep) // 2
                arrays = arrays[:, left : left + keep]
            letters = DNA_LETTER_CODES
            batch = [letters[a].tobytes().decode("ascii") for a in arrays]
        rows = [None if is_missing(s) else [self.cls_id] + self.token_ids(str(s)) for s in batch]
        width = max([len(r) for r in rows if r is not None], default=1)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row is not None:
                input_ids[i, : len(row)] = torch.tensor(row)
                attention_mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = input_ids.shape[0]
        width = max(input_ids.shape[1] - 1, 1)
        emb = torch.zeros(batch, width, self.dim, device=input_ids.device)
        mask = torch.zeros(batch, width, dtype=torch.bool, device=input_ids.device)
        present = attention_mask[:, 0].bool()
        if present.any():
            out = self.backbone(
                input_ids=input_ids[present], attention_mask=attention_mask[present]
            ).last_hidden_state
            emb = emb.to(out.dtype)
            emb[present, : out.shape[1] - 1] = out[:, 1:]
            mask[present, : out.shape[1] - 1] = attention_mask[present, 1:].bool()
            emb = emb * mask.unsqueeze(-1)
        return emb, mask


class _NoLogits(nn.Module):
    """Stands in for ESM-2's LM head: forward returns nothing worth computing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :0]


class Esm2Encoder(Encoder):
    """ESM-2 per-residue representations of the last layer, BOS/EOS dropped: (B, L, dim)."""

    modality = "protein"

    def __init__(self, model: nn.Module, alphabet, max_len: int = 1022):
        super().__init__()
        # Embeddings only: the contact head is never called and the LM head's logits (tied
        # to the token embedding, plus its own dense layer) are discarded.
        model.contact_head = nn.Identity()
        model.lm_head = _NoLogits()
        self.model = model
        self.alphabet = alphabet
        self.max_len = max_len
        self.dim = model.embed_dim
        self.num_layers = model.num_layers

    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def tail(self) -> list[nn.Module]:
        return [self.model.emb_layer_norm_after]

    def tokenize(self, batch) -> dict[str, torch.Tensor]:
        """``tokens`` (B, 2 + longest) with BOS/EOS/padding; ``lengths`` 0 = missing.

        A protein longer than ``max_len`` residues keeps its N-terminal ``max_len``.
        """
        a = self.alphabet
        seqs = [None if is_missing(s) else str(s)[: self.max_len] for s in batch]
        width = max([len(s) for s in seqs if s is not None], default=0) + 2
        tokens = torch.full((len(seqs), width), a.padding_idx, dtype=torch.long)
        lengths = torch.zeros(len(seqs), dtype=torch.long)
        for i, seq in enumerate(seqs):
            if seq is None:
                continue
            ids = [a.cls_idx] + [a.get_idx(c) for c in seq] + [a.eos_idx]
            tokens[i, : len(ids)] = torch.tensor(ids)
            lengths[i] = len(seq)
        return {"tokens": tokens, "lengths": lengths}

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tokens.shape[0]
        width = max(tokens.shape[1] - 2, 1)
        positions = torch.arange(width, device=tokens.device)
        mask = positions.unsqueeze(0) < lengths.to(tokens.device).unsqueeze(1)
        emb = torch.zeros(batch, width, self.dim, device=tokens.device)
        present = lengths > 0
        if present.any():
            out = self.model(tokens[present], repr_layers=[self.num_layers])
            reps = out["representations"][self.num_layers][:, 1 : width + 1]
            emb = emb.to(reps.dtype)
            emb[present] = reps
            emb = emb * mask.unsqueeze(-1)
        return emb, mask


# ---------------------------------------------------------------------------------------
# Builders


def _random_model(kind: str, hparams: dict[str, Any], max_len: int) -> tuple[nn.Module, Any]:
    """A model of the real class with random weights; returns (model, extra)."""
    if kind == "enformer":
        from enformer_pytorch import Enformer

        return Enformer.from_hparams(**hparams), None
    if kind == "borzoi":
        from borzoi_pytorch import Borzoi

        return Borzoi.from_hparams(**hparams), None
    if kind == "nt":
        from transformers import EsmConfig, EsmForMaskedLM

        vocab = nt_vocabulary()
        config = EsmConfig(
            **_merge(
                dict(
                    vocab_size=len(vocab),
                    pad_token_id=vocab.index("<pad>"),
                    mask_token_id=vocab.index("<mask>"),
                    max_position_embeddings=max_len + 2,
                    position_embedding_type="rotary",
                    # Dropout 0 as in the published NT-v2 configs; 0.1 takes attention off
                    # the fused path: a 24 x 768 NT-v2-like model on 2,048 tokens took 6.3 GiB
                    # forward+backward with 0.0 and over 20 GiB with 0.1 (CPU, batch 1).
                    hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0,
                    token_dropout=False,
                    emb_layer_norm_before=False,
                    layer_norm_eps=1e-12,
                ),
                hparams,
            )
        )
        return EsmForMaskedLM(config), {t: i for i, t in enumerate(vocab)}
    if kind == "esm2":
        import esm

        alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
        return esm.model.esm2.ESM2(alphabet=alphabet, **hparams), alphabet
    raise ValueError(kind)


def _wrap(kind: str, modality: str, model: nn.Module, extra: Any, spec: dict) -> Encoder:
    max_len = int(spec.get("max_len") or DEFAULT_MAX_LEN.get(kind, 0))
    if kind == "enformer":
        return EnformerEncoder(model)
    if kind == "borzoi":
        return BorzoiEncoder(model)
    if kind == "nt":
        backbone = model.esm if hasattr(model, "esm") else model
        return NucleotideTransformerEncoder(
            backbone, extra, modality, max_len, spec.get("truncate") or "keep_5prime"
        )
    return Esm2Encoder(model, extra, max_len)


def random_encoder(name: str, spec: dict | None = None, real_size: bool = False) -> Encoder:
    """An encoder of the real class with random weights: tiny sizes, or the published ones."""
    spec = dict(spec or {})
    kind, modality = encoder_kind(name, spec)
    base = REAL_HPARAMS[kind] if real_size else TINY_HPARAMS[kind]
    hparams = _merge(base, spec.get("hparams"))
    max_len = int(spec.get("max_len") or DEFAULT_MAX_LEN.get(kind, 0))
    # A fixed seed without touching the caller's RNG: two processes build the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec.get("seed", 0)))
        model, extra = _random_model(kind, hparams, max_len)
    return _wrap(kind, modality, model, extra, spec)


def _esm_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    candidates = sorted(
        p for p in path.glob("esm*.pt") if not p.name.endswith("-contact-regression.pt")
    )
    if len(candidates) != 1:
        raise InputError(path, None, f"expected one esm*.pt checkpoint, found {len(candidates)}")
    return candidates[0]


def load_esm2(path: str | os.PathLike) -> tuple[nn.Module, Any]:
    """fair-esm's local loader; the checkpoint's config is an argparse.Namespace, which
    torch's weights-only unpickler accepts once allow-listed."""
    import esm

    checkpoint = _esm_checkpoint(Path(path))
    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(checkpoint))
    return model, alphabet


def _pretrained_model(kind: str, path: Path, spec: dict) -> tuple[nn.Module, Any]:
    if not path.exists():
        raise InputError(path, None, "pretrained weights not found; run the download_encoders rule")
    if kind == "enformer":
        from enformer_pytorch import Enformer
        from enformer_pytorch.modeling_enformer import Attention

        model = Enformer.from_pretrained(str(path), local_files_only=True)
        # The official weights were trained with TensorFlow's gamma positional features,
        # which enformer-pytorch has only for the full 196,608 bp input.
        use_tf_gamma = bool(spec.get("use_tf_gamma", False))
        for module in model.modules():
            if isinstance(module, Attention):
                module.use_tf_gamma = use_tf_gamma
        if spec.get("target_length"):
            model.set_target_length(int(spec["target_length"]))
        return model, None
    if kind == "borzoi":
        from borzoi_pytorch import Borzoi
        from borzoi_pytorch.pytorch_borzoi_transformer import Attention, get_positional_embed

        model = Borzoi.from_pretrained(str(path), local_files_only=True)
        # transformers builds the model on the meta device; Borzoi's relative-position table
        # is a non-persistent buffer, so it is not in the checkpoint and must be rebuilt.
        for module in model.modules():
            if isinstance(module, Attention) and module.positions.is_meta:
                module.positions = get_positional_embed(
                    4096, module.num_rel_pos_features, torch.device("cpu")
                )
        return model, None
    if kind == "nt":
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        # NT-v2 ships its modeling code in the snapshot: trust_remote_code runs that local
        # file, nothing is fetched.
        model = AutoModelForMaskedLM.from_pretrained(
            str(path), trust_remote_code=True, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return model, dict(tokenizer.get_vocab())
    if kind == "esm2":
        return load_esm2(path)
    raise ValueError(kind)


def build_encoder(name: str, spec: dict | None = None) -> Encoder:
    """Build encoder ``name`` (a key of ``ENCODERS``, or any name with ``spec["class"]``)."""
    spec = dict(spec or {})
    source = spec.get("source", "tiny")
    kind, modality = encoder_kind(name, spec)
    if source == "tiny":
        encoder = random_encoder(name, spec)
    elif source == "pretrained":
        path = Path(spec.get("path") or f"resources/models/{name}")
        model, extra = _pretrained_model(kind, path, spec)
        encoder = _wrap(kind, modality, model, extra, spec)
        if kind == "borzoi":
            encoder.required_length = int(spec.get("input_length", BORZOI_INPUT_BP))
    else:
        raise InputError(None, name, f"encoder source must be tiny or pretrained, got {source!r}")
    encoder.trainable_last(int(spec.get("finetune_last", 0)))
    return encoder


def spec_from_config(config: dict, name: str) -> dict:
    """The spec of encoder ``name`` with the config's sequence limits filled in.

    ``rna.max_nt`` / ``rna.truncate`` set the NT token budget and direction,
    ``protein.max_aa`` the ESM-2 residue limit, unless the spec sets them itself.
    """
    spec = dict((config.get("encoders") or {}).get(name) or {})
    kind, modality = encoder_kind(name, spec)
    if kind == "nt" and modality == "rna":
        rna = config.get("rna") or {}
        if "max_len" not in spec and rna.get("max_nt"):
            spec["max_len"] = -(-int(rna["max_nt"]) // NT_KMER) + 1
        spec.setdefault("truncate", rna.get("truncate", "keep_5prime"))
    if kind == "esm2" and "max_len" not in spec:
        max_aa = (config.get("protein") or {}).get("max_aa")
        if max_aa:
            spec["max_len"] = int(max_aa)
    return spec
