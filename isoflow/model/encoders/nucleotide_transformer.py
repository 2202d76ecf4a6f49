"""Nucleotide Transformer v2 (transformers' Esm layers): 6-mer token embeddings of an RNA, or
of the centre of a DNA window."""

from __future__ import annotations

import bisect
import itertools
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isoflow.alphabet import DNA_LETTER_CODES, TRUNCATE_MODES, is_missing, truncate
from isoflow.errors import InputError
from isoflow.model.encoders.base import Encoder, _dna_batch, _merge
from isoflow.model.registry import FAMILY_PACKAGES, TOKEN_GEOMETRY, nt_dna_crop, rna_kmer_error
from isoflow.settings import RNA_DEFAULTS, rna_config

NT_SPECIAL_TOKENS = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
NT_KMER = TOKEN_GEOMETRY["nucleotide_transformer"].letters  # 6
NT_LETTERS = frozenset("ACGTN")  # single-letter tokens

log = logging.getLogger(__name__)


def nt_token_ids(seq: str, vocab: dict[str, int]) -> list[int]:
    """NT's tokenizer on an upper-case ``seq``, without CLS: read from the 5' end, a 6-mer
    of A/C/G/T where one starts, else one letter (A, C, G, T, N); a run of any other letters
    (IUPAC codes, U, ...) is one ``<unk>``; whitespace separates runs and is dropped. So the
    6-mer frame restarts after an N or an unknown run: ``ACNGTACGTAC`` -> ``A C N GTACGT A
    C``, ``ACRYGTACGTAA`` -> ``A C <unk> GTACGT A A``. (The Hub tokenizer, transformers'
    ``EsmTokenizer``, splits the text on its vocabulary with a trie, earliest and longest
    match first, and gives each stretch between matches to ``str.split``: the same.)"""
    ids: list[int] = []
    unk = vocab["<unk>"]
    start, n = 0, len(seq)
    while start < n:
        kmer = seq[start : start + NT_KMER]
        token = vocab.get(kmer) if len(kmer) == NT_KMER else None
        if token is not None:
            ids.append(token)
            start += NT_KMER
        elif seq[start] in NT_LETTERS:
            ids.append(vocab[seq[start]])
            start += 1
        else:
            stop = start
            while stop < n and seq[stop] not in NT_LETTERS:
                stop += 1
            ids.extend(unk for _ in seq[start:stop].split())
            start = stop
    return ids


def nt_dna_token_starts(seq: str) -> list[int]:
    """Where each token :func:`nt_token_ids` makes of ``seq`` (upper-case A, C, G, T, N
    only, as a DNA window decodes) starts: a 6-mer of A/C/G/T where one starts, else one
    letter. ``ACNGTACGTAC`` -> ``[0, 1, 2, 3, 9, 10]``."""
    starts: list[int] = []
    start, n = 0, len(seq)
    while start < n:
        starts.append(start)
        if start + NT_KMER <= n and "N" not in seq[start : start + NT_KMER]:
            start += NT_KMER
        else:
            start += 1
    return starts


def nt_vocabulary() -> list[str]:
    """The Nucleotide Transformer 6-mer vocabulary: 6 specials + 4,096 6-mers + A,T,C,G,N."""
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=NT_KMER)]
    return NT_SPECIAL_TOKENS + kmers + list("ATCGN")


class NucleotideTransformerEncoder(Encoder):
    """Nucleotide Transformer (v2) token embeddings, CLS dropped: (B, tokens, hidden).

    Tokenization is NT's: a pretrained NT runs the tokenizer its folder ships
    (``AutoTokenizer``, local files only); a tiny one :func:`nt_token_ids`, which gives the
    same IDs (``tests/unit/model/test_encoders.py`` checks it against a tokenizer built in
    the Hub's on-disk format). The sequence is upper-cased first (soft-masked lowercase
    bases are bases; NT's tokenizer would turn each lowercase run into one ``<unk>``). A
    sequence longer than ``max_len - 1`` tokens' worth (``(max_len - 1) * 6`` nt) is cut to
    that many nucleotides first (``truncate``: keep the 5' end by default), then to
    ``max_len - 1`` tokens in the same direction.
    """

    MODALITIES = ("rna", "dna")
    TINY_HPARAMS = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    # NT-v2 250M multi-species sizes on stock Esm layers (the real checkpoint's remote code
    # uses gated FFNs; the stock layers match its width, depth and token count).
    REAL_HPARAMS = dict(
        hidden_size=768,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=3072,
        max_position_embeddings=2050,
    )
    letters_per_token = NT_KMER  # positional pooling's stride_nt in tokens (isoflow.embed)
    # tokens including CLS: 2,047 6-mers = 12,282 nt
    DEFAULT_MAX_LEN = TOKEN_GEOMETRY["nucleotide_transformer"].pretrained
    # whose code computes its embeddings: transformers' Esm layers (and a pretrained
    # snapshot's remote code on them), the Hub tokenizer (the store's digest:
    # isoflow.embed.package_versions)
    PACKAGES = FAMILY_PACKAGES["nucleotide_transformer"]

    def __init__(
        self,
        backbone: nn.Module,
        vocab: dict[str, int],
        modality: str,
        max_len: int,
        truncate: str = "keep_5prime",
        tokenizer=None,
    ):
        super().__init__()
        if truncate not in TRUNCATE_MODES:
            raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {truncate!r}")
        if getattr(backbone, "contact_head", None) is not None:
            backbone.contact_head = None  # only for predict_contacts; no unused parameters
        self.backbone = backbone
        self.vocab = vocab
        self.tokenizer = tokenizer  # the pretrained folder's; None: nt_token_ids
        self.modality = modality
        self.max_len = max_len
        self.truncate = truncate
        self.dim = backbone.config.hidden_size
        self.pad_id = vocab["<pad>"]
        self.cls_id = vocab["<cls>"]
        # DNA windows tokenised, and those whose tokens were re-centred on the TSS token
        # because N letters in the crop shifted it (dna_token_ids; the embed log reports them)
        self.dna_windows = 0
        self.recentred_windows = 0

    @classmethod
    def _wrap(
        cls, model: nn.Module, vocab: dict[str, int], modality: str, spec: dict, tokenizer=None
    ) -> NucleotideTransformerEncoder:
        backbone = model.esm if hasattr(model, "esm") else model
        truncate = spec.get("truncate") or RNA_DEFAULTS["truncate"]
        return cls(backbone, vocab, modality, cls.max_len_of(spec), truncate, tokenizer)

    @classmethod
    def from_hparams(
        cls, hparams: dict[str, Any], modality: str, spec: dict
    ) -> NucleotideTransformerEncoder:
        from transformers import EsmConfig, EsmForMaskedLM

        vocab = nt_vocabulary()
        defaults = dict(
            vocab_size=len(vocab),
            pad_token_id=vocab.index("<pad>"),
            mask_token_id=vocab.index("<mask>"),
            max_position_embeddings=cls.max_len_of(spec) + 2,
            position_embedding_type="rotary",
            # Dropout 0 as in the published NT-v2 configs; 0.1 takes attention off the fused
            # path: a 24 x 768 NT-v2-like model on 2,048 tokens took 6.3 GiB forward+backward
            # with 0.0 and over 20 GiB with 0.1 (CPU, batch 1).
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            token_dropout=False,
            emb_layer_norm_before=False,
            layer_norm_eps=1e-12,
        )
        model = EsmForMaskedLM(EsmConfig(**_merge(defaults, hparams)))
        return cls._wrap(model, {t: i for i, t in enumerate(vocab)}, modality, spec)

    @classmethod
    def from_pretrained(cls, path: Path, modality: str, spec: dict) -> NucleotideTransformerEncoder:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from isoflow.weights import check_code

        # NT-v2 ships its modeling code in the snapshot: trust_remote_code runs that local
        # file, nothing is fetched; only the code files recorded at download (check_code).
        check_code(path)
        try:
            model = AutoModelForMaskedLM.from_pretrained(
                str(path), trust_remote_code=True, local_files_only=True
            )
        except ImportError as err:
            # The remote code of older NT-v2 snapshots imports names newer transformers
            # releases removed (e.g. from transformers.pytorch_utils); the Hub's later
            # commits fixed their imports.
            import transformers

            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(
                path,
                "modeling code",
                f"the snapshot's remote code does not import with transformers "
                f"{transformers.__version__} ({first}); download a newer revision of the "
                f"repository (the encoder's `revision`: a commit after the Hub's import fix) "
                f"and rerun download_encoders",
            ) from err
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return cls._wrap(model, dict(tokenizer.get_vocab()), modality, spec, tokenizer)

    @classmethod
    def spec_from_config(cls, spec: dict, modality: str, config: dict) -> dict:
        """For RNA: ``rna.max_nt`` sets the token budget (``max_nt / 6 + 1``, CLS included;
        ``max_nt`` must be a multiple of 6, so the cache and a raw run read the same 6-mers)
        and ``rna.truncate`` the direction, unless the spec sets them."""
        if modality == "rna":
            rna = rna_config(config)
            if "max_len" not in spec and rna["max_nt"]:
                max_nt = int(rna["max_nt"])
                if max_nt % NT_KMER:
                    raise rna_kmer_error(max_nt)
                spec["max_len"] = max_nt // NT_KMER + 1
            spec.setdefault("truncate", rna["truncate"])
        return spec

    @classmethod
    def raw_cut(cls, spec: dict, modality: str) -> tuple[int | None, str]:
        """RNA: ``(max_len - 1) * 6`` nt from the ``truncate`` end (what :meth:`token_ids`
        cuts first). DNA windows are not cut by the loader (:meth:`dna_token_ids`)."""
        if modality != "rna":
            return None, "keep_5prime"
        return (cls.max_len_of(spec) - 1) * NT_KMER, spec.get("truncate") or RNA_DEFAULTS[
            "truncate"
        ]

    def blocks(self) -> list[nn.Module]:
        return list(self.backbone.encoder.layer)

    def tail(self) -> list[nn.Module]:
        norm = getattr(self.backbone.encoder, "emb_layer_norm_after", None)
        return [norm] if norm is not None else []

    def token_ids(self, seq: str) -> list[int]:
        """Token IDs of one sequence (no CLS), truncated to ``max_len - 1`` tokens."""
        budget = self.max_len - 1
        ids = self._ids(truncate(seq.upper(), budget * NT_KMER, self.truncate))
        if len(ids) > budget:
            ids = ids[:budget] if self.truncate == "keep_5prime" else ids[len(ids) - budget :]
        return ids

    def dna_token_ids(self, window: str) -> list[int]:
        """Token IDs (no CLS) of a DNA window centred on the TSS: at most ``max_len - 1``
        tokens, the token holding the window's centre base (``len(window) // 2``, the TSS) at
        index ``len(tokens) // 2``, where positional pooling's TSS slot reads it.

        The window is cropped to the whole 6-mers around the TSS (:func:`nt_dna_crop`: at
        most ``max_len - 1`` of them, ``3 * kmers`` bp each side of the TSS, never from one
        end: keeping the 5' end of a 196 kb window would drop the TSS) and tokenised.
        Without an N in the crop that is ``kmers`` 6-mers, the TSS in 6-mer ``kmers // 2``.
        NT reads each N as one token, so Ns make more tokens than the budget, or move the
        TSS token off the middle (as a window under 6 bp, read letter by letter, can make
        more tokens than the budget): the tokens are then cut to those centred on the TSS token
        (``max_len - 1`` of them, or the same number each side of it where the crop runs
        out first), and the window is counted in ``recentred_windows``."""
        budget = self.max_len - 1
        left, kmers = nt_dna_crop(len(window), budget)
        crop = window[left : left + kmers * NT_KMER] if kmers else window
        ids = self._ids(crop)
        self.dna_windows += 1
        if kmers and "N" not in crop:
            return ids  # kmers whole 6-mers: the TSS token at kmers // 2
        starts = nt_dna_token_starts(crop)
        if len(starts) != len(ids):
            raise RuntimeError(
                f"the NT tokenizer made {len(ids)} tokens of a DNA window, isoflow's reading "
                f"of its rule {len(starts)}: the TSS token cannot be placed"
            )
        centre = bisect.bisect_right(starts, len(window) // 2 - left) - 1
        before = min(budget // 2, centre, len(ids) - 1 - centre)
        after = min(before, budget - 1 - before)
        kept = ids[centre - before : centre + after + 1]
        if centre - before or len(kept) != min(len(ids), budget):
            self.recentred_windows += 1
            if self.recentred_windows == 1:
                log.info(
                    "nt DNA: N letters in a window's %d bp crop moved its TSS token off the "
                    "middle: kept the %d tokens centred on it (tokens %d-%d of %d); such "
                    "windows are counted (recentred_windows)",
                    len(crop),
                    len(kept),
                    centre - before,
                    centre + after,
                    len(ids),
                )
        return kept

    def _ids(self, seq: str) -> list[int]:
        """NT's token IDs of upper-case ``seq``, no CLS, uncut."""
        if self.tokenizer is not None:
            return list(self.tokenizer(seq, add_special_tokens=False)["input_ids"])
        return nt_token_ids(seq, self.vocab)

    def tokenize(self, batch) -> dict[str, torch.Tensor]:
        if self.modality == "dna":
            letters = DNA_LETTER_CODES
            windows = [letters[a].tobytes().decode("ascii") for a in _dna_batch(batch).numpy()]
            rows = [[self.cls_id] + self.dna_token_ids(w) for w in windows]
            return self._padded(rows)
        return self._padded(
            [None if is_missing(s) else [self.cls_id] + self.token_ids(str(s)) for s in batch]
        )

    def _padded(self, rows: list[list[int] | None]) -> dict[str, torch.Tensor]:
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
        present = attention_mask[:, 0].bool()
        if batch and present.all() and input_ids.shape[1] > 1:
            # every sequence present: no indexing, and no zeros to fill
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            mask = attention_mask[:, 1:].bool()
            return out.last_hidden_state[:, 1:] * mask.unsqueeze(-1), mask
        emb = torch.zeros(batch, width, self.dim, device=input_ids.device)
        mask = torch.zeros(batch, width, dtype=torch.bool, device=input_ids.device)
        if present.any():
            # row numbers, not the boolean mask: the backward of indexing by a mask needs a
            # nonzero again, inside the compiled graph
            rows = present.nonzero().squeeze(1)
            out = self.backbone(
                input_ids=input_ids[rows], attention_mask=attention_mask[rows]
            ).last_hidden_state
            emb = emb.to(out.dtype)
            emb[rows, : out.shape[1] - 1] = out[:, 1:]
            mask[rows, : out.shape[1] - 1] = attention_mask[rows, 1:].bool()
            emb = emb * mask.unsqueeze(-1)
        return emb, mask


FAMILY = NucleotideTransformerEncoder
