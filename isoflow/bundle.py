"""A trained run as a self-contained model bundle, and the inference API over it.

``export_bundle`` (rule ``export_model``) turns ``results/runs/{run}/`` into
``results/models/{run}/``::

    manifest.json     format version, tissues (output order), modalities, aggregator and
                      model sizes, each encoder's spec and how it is fed (cached: frozen and
                      pooled; raw: inside the network), dna.window, rna/protein settings, the
                      dataset (name, sha256), the checkpoint it came from, test metrics, the
                      export check
    model.pt          the best checkpoint's module state (parameters and buffers of the
                      network: aggregator, head, and the encoders read raw; no optimizer)
    encoders/NAME.pt  the frozen weights of a tiny encoder read through the embedding cache
    README.md         the model card

``load_model(path)`` rebuilds a :class:`Model` from the bundle alone (no training config, no
``results/``): tiny encoders come from the bundle's files; a pretrained encoder's weights are
GBs, so the bundle records their folder and the download record (``isoflow_source.json``:
commit or per-file sha256) and checks it at load. ``Model.predict`` takes raw sequences and
returns log(1 + TPM) per tissue, the units of ``predictions.parquet``; docs/bundle.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from isoflow.alphabet import DNA_LETTER_CODES, is_missing, truncate
from isoflow.errors import InputError
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.experiments import MODALITIES, run_name
from isoflow.files import atomic_path
from isoflow.provenance import cached_digest, file_digest

log = logging.getLogger("isoflow.bundle")

FORMAT = 1  # bump when a bundle written before can no longer be read as it is
MANIFEST = "manifest.json"
WEIGHTS = "model.pt"
ENCODER_DIR = "encoders"
CARD = "README.md"
# manifest key: sha256 of model.pt, of each encoders/NAME.pt and of the manifest itself
# (canonical JSON without this key and without encoders.*.pretrained.path, the one field a
# user may edit: docs/bundle.md), written at export and checked by every load_model
DIGESTS = "digests"
# What load_model needs from a manifest (a bundle lacking one fails with one line naming it).
REQUIRED_KEYS = (
    "format",
    "run",
    "tissues",
    "modalities",
    "aggregator",
    "model",
    "dna",
    "rna",
    "protein",
    "encoders",
    "precision",
    "eval_batch_size",
    "dataset",
    "metrics",
)
ENCODER_KEYS = ("name", "mode", "spec")
# What encoders.*.weights may name: a file export_bundle writes (encoders/NAME.pt, NAME an
# encoder name). Anything else (../x.pt, an absolute path) would read, and isoflow finetune
# write, a file outside the bundle: the sender writes the digests, so they do not stop it.
ENCODER_WEIGHTS = re.compile(rf"{ENCODER_DIR}/[A-Za-z0-9_.-]+\.pt")
# Largest |bundle - predictions.parquet| the export check accepts (log1p TPM). float32 on
# a CPU: measured up to 3.4e-5 on the demo's runs (all 361 test transcripts; docs/bundle.md):
# the frozen encoders see other batches than rule embed gave them (other padding), and a
# last-bit difference can flip the float16 the cache rounds to. Under bf16 autocast (a GPU
# run's default) a prediction carries bf16's ~0.4 % rounding of each activation: that bound
# is a choice, not a measurement. A cache built through torch.compile (embed.compile) holds
# values within two float16 steps of the eager ones the bundle encodes new sequences with
# (docs/encoders.md, "Compiled forward"); one-step flips moved the demo's DNA-path
# predictions by 0.03 (docs/benchmarks.md): the bf16 bound for it too, a choice as well.
CHECK_TOLERANCE = {"float32": 2e-4, "bf16": 5e-2, "compiled cache": 5e-2}
CHECK_N = 64  # test transcripts the export re-predicts
# manifest key: torch's CPU kernels of the process that wrote the bundle and checked it on a
# CPU (isoflow.cpu: the choice held and the kernels in effect); absent from a bundle checked
# on a GPU and from one exported before it was recorded. load_model warns once when a CPU
# process runs other kernels: unheld on an AVX-512 CPU the demo's bundles missed their runs
# by up to 0.087 (docs/bundle.md)
CPU_KERNELS = "cpu_kernels"
_KERNELS_WARNED: set[tuple[str, str]] = set()  # (recorded, current) pairs warned about


@dataclass(frozen=True)
class ModelInput:
    """One transcript as the model reads it (any object with these attributes will do).

    ``dna``: the ``dna.window`` bp around the TSS read 5'->3' on the transcript's strand
    (already reverse-complemented for a minus-strand transcript), TSS at index
    ``window // 2``; a str (``ACGTN``, any other letter reads as N) or uint8 tokens.
    ``rna``: the spliced transcript 5'->3' (untruncated: the model cuts it as training did).
    ``protein``: the translated CDS, ``None`` or ``""`` for a non-coding transcript.
    """

    id: str
    dna: str | np.ndarray | None = None
    rna: str | None = None
    protein: str | None = None


def _raw_cuts(manifest: dict) -> dict[str, tuple[int | None, str]]:
    """``{rna, protein: (letters, truncate mode)}`` a raw sequence of the bundle is cut to:
    the encoder's :func:`~isoflow.model.encoders.spec_raw_cut` for a modality the model
    reads raw, else the manifest's ``rna.max_nt`` / ``protein.max_aa``."""
    from isoflow.model.encoders import spec_raw_cut

    cuts = {
        "rna": (int(manifest["rna"]["max_nt"]), str(manifest["rna"]["truncate"])),
        "protein": (int(manifest["protein"]["max_aa"]), "keep_5prime"),
    }
    for modality, entry in manifest.get("encoders", {}).items():
        if modality in cuts and entry.get("mode") == "raw":
            cuts[modality] = spec_raw_cut(entry["name"], entry["spec"])
    return cuts


def _autocast_bf16(precision: str | None, device: torch.device) -> bool:
    """Whether training scored its test split under bf16 autocast on this kind of device
    (``isoflow.train``: ``train.precision`` null means bf16-mixed on a GPU)."""
    resolved = precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    return device.type == "cuda" and str(resolved).startswith("bf16")


# ---------------------------------------------------------------------------- the model


class Model:
    """A trained IsoFormer ready to score sequences (build it with :func:`load_model`).

    ``tissues``: output columns in order; ``modalities``: what it reads (dna, rna, protein);
    ``dna_window``: length of the DNA input; ``rna_max_nt`` / ``rna_truncate`` and
    ``protein_max_aa``: how longer sequences are cut (as training cut them); ``card``: the
    manifest. ``predict`` = ``head(embed(inputs))``: a caller that changes one modality
    (in-silico mutagenesis) embeds the others once and reuses them.
    """

    def __init__(
        self,
        manifest: dict[str, Any],
        network: torch.nn.Module,
        frozen: dict[str, tuple[torch.nn.Module, int]],
        device: torch.device,
        path: Path | None = None,
        frozen_precision: dict[str, str] | None = None,
        frozen_batch: dict[str, int] | None = None,
        frozen_threads: dict[str, int] | None = None,
    ):
        self.card = manifest
        self.path = path
        self.network = network
        # modality -> (frozen encoder, pool_to or a positional pooling mapping, as
        # isoflow.embed.pool_sequence takes it): the cached modalities
        self.frozen = frozen
        # modality -> the embedding forward's precision the cache was built with ("bf16":
        # autocast on CUDA, meta.json's `autocast`), so new sequences are encoded the same way
        self.frozen_precision = frozen_precision or {}
        # modality -> the sequences per forward its cache was built with (the spec's
        # embed_batch_size; 0: as they come), so a new sequence's float32 tokens, and the
        # float16 they round to, are those rule embed cached (isoflow.embed.encode_pooled)
        self.frozen_batch = frozen_batch or {}
        # modality -> the torch threads its cache's CPU forwards ran on (meta.json `threads`):
        # a CPU kernel may split its sums by them, so new sequences are encoded on as many
        self.frozen_threads = frozen_threads or {}
        self.device = device
        self.tissues: list[str] = list(manifest["tissues"])
        self.modalities: tuple[str, ...] = tuple(manifest["modalities"])
        self.dna_window = int(manifest["dna"]["window"])
        self.rna_max_nt = int(manifest["rna"]["max_nt"])
        self.rna_truncate = str(manifest["rna"]["truncate"])
        self.protein_max_aa = int(manifest["protein"]["max_aa"])
        # modality -> (letters, truncate mode) the run's loader cut a raw RNA / protein to:
        # its encoder's own cut of the effective spec (isoflow.loader.raw_cuts), which a
        # spec's max_len / truncate set over rna.max_nt / protein.max_aa
        self.raw_cuts = _raw_cuts(manifest)
        self.batch_size = int(manifest["eval_batch_size"])
        self.autocast = _autocast_bf16(manifest["precision"], device)

    def __repr__(self) -> str:
        return (
            f"Model({self.card['run']!r}, modalities={self.modalities}, "
            f"{len(self.tissues)} tissues, dna_window={self.dna_window}, device={self.device})"
        )

    def batch_size_or_default(self, batch_size: int | None) -> int:
        """``batch_size``, or the run's evaluation batch size when it is None; anything
        under 1 is an :class:`InputError` (a negative size would score nothing, 0 would
        silently mean the default)."""
        if batch_size is None:
            return self.batch_size
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise InputError(None, "batch_size", f"{batch_size!r}: give a whole number >= 1")
        return int(batch_size)

    # ---- inputs as training fed them

    def _dna(self, item: Any) -> np.ndarray:
        seq = getattr(item, "dna", None)
        if isinstance(seq, np.ndarray):
            tokens = np.minimum(seq.astype(np.uint8, copy=False), 4)
        elif isinstance(seq, str | bytes):
            from isoflow.genome import encode

            try:
                tokens = encode(seq)
            except UnicodeEncodeError as err:
                raise InputError(None, item.id, f"DNA has a non-ASCII letter: {err}") from None
        else:
            raise InputError(None, getattr(item, "id", None), "no DNA sequence (.dna)")
        if len(tokens) != self.dna_window:
            raise InputError(
                None,
                item.id,
                f"DNA is {len(tokens)} bp; this model reads windows of {self.dna_window} bp "
                "centred on the TSS",
            )
        return tokens

    def _sequence(self, item: Any, modality: str) -> Any:
        """The input of one modality as the training loader or the embedding cache gave it:
        a cached modality gets the whole sequence (its frozen encoder cuts it, as rule embed
        ran it); a raw one is cut first as ``isoflow.loader`` cut it (``raw_cuts``: the
        encoder's cut of its spec, ``rna.max_nt`` / ``protein.max_aa`` unless the spec sets
        ``max_len`` or ``truncate`` itself)."""
        if modality == "dna":
            return self._dna(item)
        seq = getattr(item, modality, None)
        if is_missing(seq):
            if modality == "rna":
                raise InputError(None, getattr(item, "id", None), "no RNA sequence (.rna)")
            return None
        seq = str(seq)
        if modality in self.frozen:
            return seq
        return truncate(seq, *self.raw_cuts[modality])

    # ---- the two halves

    @torch.no_grad()
    def embed(
        self,
        inputs: Sequence[Any],
        modalities: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """Modality -> one float32 CPU tensor ``(L_i, D)`` per input: what the aggregator
        reads. A cached modality: the frozen encoder's tokens pooled as its cache was
        (``pool_to`` rows, or by position) and rounded to float16, exactly as
        ``isoflow.embed`` stored them; a raw one: the network's own encoder's tokens. A
        missing protein is a ``(0, D)`` tensor."""
        modalities = list(modalities or self.modalities)
        unknown = set(modalities) - set(self.modalities)
        if unknown:
            raise ValueError(f"this model reads {self.modalities}, not {sorted(unknown)}")
        batch_size = self.batch_size_or_default(batch_size)
        out: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            for modality in modalities:
                seqs = [self._sequence(item, modality) for item in chunk]
                out[modality] += self._encode(modality, seqs, [item.id for item in chunk])
        return out

    def _encode(self, modality: str, seqs: list, ids: list[str]) -> list[torch.Tensor]:
        present = [i for i, s in enumerate(seqs) if s is not None]
        rows: list[torch.Tensor | None] = [None] * len(seqs)
        if present:
            batch = [seqs[i] for i in present]
            if modality in self.frozen:
                from isoflow.embed import encode_pooled

                encoder, pool_to = self.frozen[modality]
                names = [ids[i] for i in present]
                precision = self.frozen_precision.get(modality, "fp32")
                per_forward = self.frozen_batch.get(modality, 0)
                with self._cache_threads(modality):
                    pooled = encode_pooled(
                        encoder, batch, pool_to, self.device, names, precision, per_forward
                    )
                # stored float16 in the cache, cast back to float32 by the model: the same
                encoded = [p.to(torch.float16).float() for p in pooled]
            else:
                encoder = self.network.encoders[modality]
                tokens = {k: v.to(self.device) for k, v in encoder.tokenize(batch).items()}
                with self._autocast():
                    emb, mask = encoder(**tokens)
                emb, lengths = emb.float().cpu(), mask.sum(dim=1).cpu()
                encoded = [emb[r, : int(lengths[r])] for r in range(len(batch))]
            for i, value in zip(present, encoded, strict=True):
                rows[i] = value
        width = self.frozen[modality][0].dim if modality in self.frozen else None
        width = width or self.network.encoders[modality].dim
        return [r if r is not None else torch.zeros((0, width)) for r in rows]

    @torch.no_grad()
    def head(
        self, embeddings: dict[str, Sequence[torch.Tensor]], *, batch_size: int | None = None
    ) -> np.ndarray:
        """``(n, n_tissues)`` float32 predictions from :meth:`embed`'s output (every
        modality the model reads, n tensors each; lists may repeat one tensor)."""
        missing = set(self.modalities) - set(embeddings)
        if missing:
            raise ValueError(f"embeddings lack {sorted(missing)}")
        n = {len(v) for v in embeddings.values()}
        if len(n) != 1:
            raise ValueError(f"modalities hold different numbers of inputs: {sorted(n)}")
        total = n.pop()
        batch_size = self.batch_size_or_default(batch_size)
        out = np.zeros((total, len(self.tissues)), dtype=np.float32)
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            batch = {m: _padded(embeddings[m][start:stop], self.device) for m in self.modalities}
            with self._autocast():
                predicted = self.network(batch).float()
            out[start:stop] = predicted.cpu().numpy()
        return out

    def predict(
        self,
        inputs: Sequence[Any],
        *,
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """``(n, n_tissues)`` float32 log(1 + TPM) per tissue (``self.tissues`` order) for
        objects with ``.id``, ``.dna``, ``.rna``, ``.protein`` (:class:`ModelInput`).
        ``batch_size``: default the run's evaluation batch size; ``progress(done, total)``
        is called after each batch."""
        batch_size = self.batch_size_or_default(batch_size)
        inputs = list(inputs)
        out = np.zeros((len(inputs), len(self.tissues)), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            out[start : start + len(chunk)] = self.head(self.embed(chunk, batch_size=batch_size))
            if progress is not None:
                progress(start + len(chunk), len(inputs))
        return out

    @contextlib.contextmanager
    def _cache_threads(self, modality: str):
        """On a CPU, torch's threads set to those the modality's cache was built on (none
        recorded: as they are) for the block, then back."""
        threads = self.frozen_threads.get(modality)
        before = torch.get_num_threads()
        if self.device.type != "cpu" or not threads or threads == before:
            yield
            return
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _autocast(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def _padded(
    rows: Sequence[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(emb (B, L, D), mask (B, L))`` of per-input rows, L the longest (at least 1),
    padding zero: the layout ``EmbeddingCache.gather`` gives training."""
    lengths = [len(r) for r in rows]
    width = max(max(lengths, default=0), 1)
    dim = rows[0].shape[1]
    emb = torch.zeros((len(rows), width, dim))
    for i, r in enumerate(rows):
        emb[i, : len(r)] = r
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return emb.to(device), mask.to(device)


# ---------------------------------------------------------------------------- loading


GTEX_UNITS = "log(1 + TPM)"  # what a bundle exported from a GTEx run predicts


def output_units(manifest: Mapping[str, Any]) -> str:
    """What a bundle's outputs are in, as labels say it: ``log(1 + TPM)`` for a bundle
    exported from a run; a fine-tuned bundle (a ``finetune`` record) predicts its
    measurement table's columns in the table's own units, named by the table's file:
    ``the table's units (measurements.tsv)``. The one place every output label (score,
    design, explain, variants) takes its units from."""
    record = manifest.get("finetune")
    if not isinstance(record, Mapping):
        return GTEX_UNITS
    source = record.get("source")
    table = source.get("table") if isinstance(source, Mapping) else None
    return f"the table's units ({Path(str(table)).name})" if table else "the table's units"


def warn_genomic_inputs(path: str | os.PathLike, manifest: Mapping[str, Any], use: str) -> bool:
    """A fine-tuned bundle (a ``finetune`` record) learned from constructs placed in the DNA
    window as ``finetune.construct_options`` says (N fill, a background); ``isoflow
    variants`` and ``isoflow explain --transcript`` / ``--attention`` over a dataset give it
    genomic windows and annotated transcripts, which it never saw in fine-tuning. Not
    refused (a variant's effect may still be worth a look), but one warning naming the
    bundle's manifest, its construct placement, ``use`` (what the command does) and the
    units; returns whether it warned (False for a bundle exported from a run)."""
    record = manifest.get("finetune")
    if not isinstance(record, Mapping):
        return False
    options = record.get("construct_options")
    if isinstance(options, Mapping):
        background = options.get("background")
        around = (
            f"the background {background.get('path')}"
            if isinstance(background, Mapping)
            else f"{options.get('fill', 'N')} fill"
        )
        placed = (
            f"constructs placed with {around} around the cassette in the DNA window, polyA "
            f"in the RNA {'on' if options.get('polya_in_rna') else 'off'}, polyA tail "
            f"{options.get('polya_tail', 0)}"
        )
    else:
        placed = "constructs (their placement not recorded)"
    log.warning(
        "%s: a fine-tuned bundle, trained on %s; %s gives it genomic DNA windows and "
        "annotated transcripts, which its fine-tuning never saw: its predictions (in %s) "
        "are outside what it learned; use a bundle exported from a run for genomic inputs",
        Path(path) / MANIFEST,
        placed,
        use,
        output_units(manifest),
    )
    return True


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The bundle's manifest, checked: this ``FORMAT`` and every ``REQUIRED_KEYS``; anything
    else is one line naming the bundle and the key."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise InputError(path, MANIFEST, "not a model bundle: no manifest (rule export_model)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(manifest_path, None, f"not JSON: {err}") from None
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise InputError(manifest_path, "format", "missing: not an isoflow model bundle")
    if manifest["format"] != FORMAT:
        raise InputError(
            manifest_path,
            "format",
            f"bundle format {manifest['format']!r}, this isoflow reads format {FORMAT}: "
            "export the run again (rule export_model) with this version",
        )
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise InputError(manifest_path, key, f"missing from a format {FORMAT} manifest")
    for modality in manifest["modalities"]:
        entry = manifest["encoders"].get(modality)
        for key in ENCODER_KEYS:
            if not isinstance(entry, dict) or key not in entry:
                raise InputError(manifest_path, f"encoders.{modality}.{key}", "missing")
    encoders = manifest["encoders"] if isinstance(manifest["encoders"], dict) else {}
    for modality, entry in encoders.items():
        name = entry.get("weights") if isinstance(entry, dict) else None
        if name is not None and not (
            isinstance(name, str) and ENCODER_WEIGHTS.fullmatch(name) and ".." not in name
        ):
            raise InputError(
                manifest_path,
                f"encoders.{modality}.weights",
                f"{name!r} is not a file of the bundle ({ENCODER_DIR}/NAME.pt, or null): "
                "isoflow's export never writes it; re-export the bundle",
            )
    return manifest


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, which must lie inside ``folder`` once resolved (symbolic links
    followed): a name or a link leading out of it is an :class:`InputError`."""
    file = folder / name
    if not file.resolve().is_relative_to(folder.resolve()):
        raise InputError(folder, name, "leads outside the bundle's folder: not a bundle file")
    return file


def _bundle_file(path: Path, name: str) -> Path:
    file = inside(path, name)
    if not file.is_file():
        raise InputError(path, name, "missing from the bundle (copy the whole folder)")
    return file


def _pretrained_folder(path: Path, modality: str, entry: dict) -> Path:
    """A pretrained encoder's weights folder, checked against the download record the
    bundle holds (commit, or each file's sha256): weights from another download fail."""
    from isoflow.weights import SOURCE_FILE, read_source

    recorded = entry.get("pretrained") or {}
    folder = Path(recorded.get("path") or "")
    source = folder / SOURCE_FILE
    where = f"encoders.{modality}.pretrained"
    if not source.is_file():
        raise InputError(
            path / MANIFEST,
            where,
            f"pretrained {entry['name']} weights not found at {folder} (no {SOURCE_FILE}); "
            "download them (rule download_encoders) or fix the path in the manifest",
        )
    seen = read_source(folder)  # one line for a truncated or non-object record
    for key in ("commit", "sha256"):
        if recorded.get(key) != seen.get(key):
            raise InputError(
                source,
                key,
                f"{seen.get(key)!r} differs from the {recorded.get(key)!r} the model was "
                f"trained with ({path}): other {entry['name']} weights; give the folder of "
                f"those it was trained with ({MANIFEST} {where}.path)",
            )
    for name in seen.get("files", []):
        if not (folder / name).is_file():
            raise InputError(source, name, "listed weight file is missing")
    return folder


def _build_encoder(path: Path, modality: str, entry: dict) -> torch.nn.Module:
    """The encoder of ``entry`` with its trained weights: a tiny one's from the bundle
    (cached modalities; a raw one's come with ``model.pt``), a pretrained one's from its
    checked download folder."""
    from isoflow.model.encoders import build_encoder

    spec = dict(entry["spec"])
    if spec.get("source") == "pretrained":
        spec["path"] = str(_pretrained_folder(path, modality, entry))
    encoder = build_encoder(entry["name"], {**spec, "finetune_last": 0})
    if entry.get("weights"):
        _load_state(path, entry["weights"], encoder)
    return encoder


def _load_state(path: Path, name: str, module: torch.nn.Module) -> None:
    """``module`` given the state in the bundle's file ``name``; an unreadable file or one
    that does not fit is one line naming it (torch's own errors span many lines)."""
    import pickle

    file = _bundle_file(path, name)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            path, name, f"unreadable ({first}): re-export the bundle or copy it again"
        ) from None
    if not isinstance(state, Mapping):
        raise InputError(path, name, "not a saved module state: re-export the bundle")
    expected, found = set(module.state_dict()), set(state)
    if expected != found:
        differ = sorted(expected ^ found)
        raise InputError(
            path / name,
            differ[0],
            f"weights do not fit the model the manifest describes ({len(differ)} parameters "
            "or buffers differ)",
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines or ["?"])[0]
        raise InputError(
            path / name,
            None,
            f"weights do not fit the model the manifest describes ({detail})",
        ) from None


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint of this project's training loaded as data only
    (``weights_only=True``: tensors, numbers, strings and containers, what its callbacks
    save; Lightning resumes from it the same way). A file that would run other Python
    objects when unpickled, or that torch cannot read, is one line naming it."""
    import pickle

    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        named = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
        detail = (named or lines or [type(err).__name__])[0].split(". Please")[0]
        raise InputError(
            path,
            None,
            f"not loadable as a checkpoint of data only ({detail[:200]}): isoflow runs no code "
            "from a checkpoint; train the run again (rule train)",
        ) from None
    if not isinstance(saved, Mapping) or "state_dict" not in saved:
        raise InputError(path, "state_dict", "missing: not a Lightning checkpoint")
    return dict(saved)


def _weight_files(manifest: Mapping[str, Any]) -> list[str]:
    """The bundle files holding weights: ``model.pt`` and each ``encoders/NAME.pt``."""
    names = [WEIGHTS]
    for entry in (manifest.get("encoders") or {}).values():
        if isinstance(entry, dict) and entry.get("weights") and entry["weights"] not in names:
            names.append(str(entry["weights"]))
    return names


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest as JSON (sorted keys) without ``digests`` and without each
    encoder's ``pretrained.path`` (moving a bundle's pretrained weights edits that)."""
    plain = json.loads(json.dumps({k: v for k, v in manifest.items() if k != DIGESTS}))
    for entry in (plain.get("encoders") or {}).values():
        if isinstance(entry, dict) and isinstance(entry.get("pretrained"), dict):
            entry["pretrained"].pop("path", None)
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_digests(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """The bundle's weight files and manifest are what its export recorded (``digests``): a
    truncated or swapped file, or a manifest edited after the export (another
    ``pool_to``, window, tissue name...), is one line instead of other predictions."""
    path = Path(path)
    digests = manifest.get(DIGESTS)
    if not isinstance(digests, dict):
        raise InputError(
            path / MANIFEST,
            DIGESTS,
            "missing: the bundle was exported before isoflow recorded the sha256 of its "
            "files, so they cannot be checked; export it again (snakemake --forcerun "
            "export_model export_models; a fine-tuned bundle: isoflow finetune)",
        )
    if digests.get(MANIFEST) != manifest_digest(manifest):
        raise InputError(
            path / MANIFEST,
            None,
            "edited after the export (its sha256 differs from the one recorded in "
            f"{DIGESTS}; only encoders.*.pretrained.path may change): re-export or re-copy "
            "the bundle",
        )
    for name in _weight_files(manifest):
        found = file_digest(_bundle_file(path, name))
        if digests.get(name) != found:
            raise InputError(
                path,
                name,
                f"does not match its manifest (sha256 {found[:12]}..., recorded "
                f"{str(digests.get(name))[:12]}...): re-export or re-copy the bundle",
            )


def kernels_record(device: torch.device) -> dict[str, Any] | None:
    """The manifest's ``cpu_kernels`` for a bundle written and checked on ``device``: on a
    CPU, the ``resources.cpu_kernels`` choice this process's variables hold
    (:func:`isoflow.cpu.held_choice`) and the kernels in effect
    (:func:`isoflow.cpu.kernels_in_effect`: ATen's capability and the variables as set);
    None on a GPU (the CPU kernels made none of its numbers)."""
    from isoflow import cpu

    if device.type != "cpu":
        return None
    return {"choice": cpu.held_choice(), **cpu.kernels_in_effect()}


def _kernels_text(record: Mapping[str, Any]) -> str:
    held = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("choice", "cpu_capability"))
    return f"{record.get('cpu_capability')} ({held or 'none held'})"


def check_kernels(path: Path, manifest: Mapping[str, Any], device: torch.device) -> None:
    """Warn, once per process for each pair of kernels, when a bundle is loaded on a CPU
    under other CPU kernels than its manifest records (``cpu_kernels``): its predictions may
    then differ from the run's in the third decimal, with exit 0. No record (a bundle of a
    GPU export, or one exported before it was recorded), or a GPU: nothing to compare."""
    recorded = manifest.get(CPU_KERNELS)
    if device.type != "cpu" or not isinstance(recorded, Mapping):
        return
    current = kernels_record(device)
    if dict(recorded) == current:
        return
    key = (json.dumps(recorded, sort_keys=True), json.dumps(current, sort_keys=True))
    if key in _KERNELS_WARNED:
        return
    _KERNELS_WARNED.add(key)
    choice = recorded.get("choice")
    if choice:
        fix = (
            f"to run the export's, set ISOFLOW_CPU_KERNELS={choice} and call "
            "isoflow.cpu.pin_for_command() before torch is imported (the isoflow command "
            "does; export ISOFLOW_CPU_KERNELS before it)"
        )
    else:
        fix = "to run the export's, set those variables before torch is imported"
    log.warning(
        "%s: exported under torch CPU kernels %s, this process runs %s: its predictions may "
        "differ from the run's (the demo's bundles on an AVX-512 CPU: by up to 0.087); %s",
        path,
        _kernels_text(recorded),
        _kernels_text(current or {}),
        fix,
    )


def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None) -> Model:
    """The :class:`Model` of bundle ``path`` (``results/models/{run}/``) on ``device``
    (default: CUDA when available), in eval mode. On a CPU, a process running other CPU
    kernels than the bundle's export is warned once (:func:`check_kernels`)."""
    from isoflow.model.isoformer import IsoFormer

    path = Path(path)
    manifest = read_manifest(path)
    check_digests(path, manifest)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    check_kernels(path, manifest, device)
    raw, frozen, dims = {}, {}, {}
    frozen_precision, frozen_batch, frozen_threads = {}, {}, {}
    for modality in manifest["modalities"]:
        entry = manifest["encoders"][modality]
        if entry["mode"] == "cached":
            encoder = _build_encoder(path, modality, entry).to(device).eval()
            # pooled as its cache: positional when the manifest says, else to pool_to slots
            frozen[modality] = (encoder, entry.get("pooling") or int(entry["spec"]["pool_to"]))
            frozen_precision[modality] = entry.get("precision", "fp32")
            frozen_batch[modality] = int(entry["spec"].get("embed_batch_size") or 0)
            if entry.get("threads"):
                frozen_threads[modality] = int(entry["threads"])
            dims[modality] = encoder.dim
        else:
            raw[modality] = _build_encoder(path, modality, entry)
    model = manifest["model"]
    network = IsoFormer(
        n_tissues=len(manifest["tissues"]),
        encoders=raw,
        dims=dims,
        aggregator=manifest["aggregator"],
        d_model=model["d_model"],
        depth=model["depth"],
        heads=model["heads"],
        dropout=model["dropout"],
        n_latents=model["n_latents"],
    )
    _load_state(path, WEIGHTS, network)
    network.to(device).eval()
    return Model(
        manifest, network, frozen, device, path, frozen_precision, frozen_batch, frozen_threads
    )


# ---------------------------------------------------------------------------- exporting


def dataset_inputs(
    frame: pd.DataFrame, genome_fasta: str | os.PathLike | None = None
) -> list[ModelInput]:
    """:class:`ModelInput` of dataset rows, the DNA read from the genome as training reads
    it (``GenomeWindows.tokens``: N-padded past contig ends, reverse-complemented on -);
    no DNA without a genome."""
    from isoflow.genome import GenomeWindows

    genome = GenomeWindows(genome_fasta) if genome_fasta else None
    inputs = []
    for row in frame.itertuples(index=False):
        dna = None
        if genome is not None:
            start, end = int(row.window_start), int(row.window_end)
            tokens = genome.tokens(row.chrom, start, end, row.strand)
            dna = DNA_LETTER_CODES[np.minimum(tokens, 4)].tobytes().decode("ascii")
        inputs.append(
            ModelInput(
                id=row.transcript_id,
                dna=dna,
                rna=row.rna_seq,
                protein=None if is_missing(row.protein_seq) else row.protein_seq,
            )
        )
    return inputs


def _encoder_entries(
    settings: dict,
    experiment: dict,
    cache_dirs: dict[str, str | os.PathLike],
    cached_dims: dict[str, int],
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, dict], dict[str, torch.nn.Module]]:
    """Manifest entries of the run's encoders, and the frozen ones whose weights the bundle
    keeps (tiny, cached). A cached encoder's spec is the one its cache records (what
    actually made the embeddings); a raw one's is the training spec."""
    from isoflow.embed import EmbeddingCache, frozen_encoder
    from isoflow.model.encoders import spec_from_config
    from isoflow.settings import encoder_names, with_encoder_defaults
    from isoflow.weights import read_source
    from isoflow.workflow import weights_dir

    entries, keep = {}, {}
    for modality, name in encoder_names(settings, experiment).items():
        if modality in cached_dims:
            if modality not in cache_dirs:
                raise InputError(None, modality, "the run reads a cache: give its folder")
            meta = EmbeddingCache(cache_dirs[modality]).meta
            spec = with_encoder_defaults(meta.get("spec") or spec_from_config(settings, name))
            entry = {"name": meta.get("encoder", name), "mode": "cached", "spec": spec}
            # the cache's embedding precision (bf16 autocast on CUDA, embed.precision)
            entry["precision"] = meta.get("autocast", "fp32")
            if meta.get("threads"):  # the torch threads of its CPU forwards
                entry["threads"] = int(meta["threads"])
            if meta.get("compile"):  # built through torch.compile: the check's tolerance
                entry["compile"] = meta["compile"]
            if meta.get("pooling"):  # positional (isoflow.embed.pool_positional); else pool_to
                entry["pooling"] = meta["pooling"]
            if int(meta["dim"]) != int(cached_dims[modality]):
                raise InputError(
                    cache_dirs[modality],
                    "dim",
                    f"{meta['dim']} differs from the checkpoint's {cached_dims[modality]}: "
                    "give the cache the run was trained with",
                )
        else:
            spec = with_encoder_defaults(spec_from_config(settings, name))
            entry = {"name": name, "mode": "raw", "spec": spec, "weights": None}  # in model.pt
            if not any(k.startswith(f"encoders.{modality}.") for k in state):
                raise InputError(None, modality, "checkpoint holds no weights of this encoder")
        if spec["source"] == "pretrained":
            folder = Path(weights_dir(entry["name"], spec)).resolve()
            record = read_source(folder)
            entry["pretrained"] = {
                "path": str(folder),
                "commit": record.get("commit"),
                "sha256": record.get("sha256"),
            }
            entry["weights"] = None
        elif entry["mode"] == "cached":
            entry["weights"] = f"{ENCODER_DIR}/{entry['name']}.pt"
            keep[entry["weights"]] = frozen_encoder(entry["name"], spec)
        entries[modality] = entry
    return entries, keep


def _card_inputs(manifest: dict[str, Any]) -> str:
    """The card's line on what the model reads: the bundle's modalities only (a DNA-only
    model is not said to read an RNA it never sees)."""
    reads = {
        "dna": f"DNA {manifest['dna']['window']} bp centred on the TSS, 5'->3' on the "
        "transcript's strand",
        "rna": f"RNA up to {manifest['rna']['max_nt']} nt ({manifest['rna']['truncate']})",
        "protein": f"protein up to {manifest['protein']['max_aa']} residues (N-terminal part)",
    }
    return "; ".join(reads[m] for m in manifest["modalities"])


def _card(manifest: dict[str, Any], frame: pd.DataFrame) -> str:
    """The bundle's README.md."""
    metrics = manifest["metrics"]
    mean = metrics.get("mean") or {}
    counts = frame["split"].value_counts()

    def number(value):
        return "n/a" if value is None else f"{value:.3f}"

    fed = {"cached": "frozen, pooled as the embedding cache", "raw": "in the network"}
    encoders = "\n".join(
        f"- {m}: `{e['name']}` ({e['spec']['source']}, {fed[e['mode']]})"
        for m, e in manifest["encoders"].items()
    )
    split = manifest.get("split") or {}
    return f"""# isoflow model `{manifest["run"]}`

Predicts transcript-isoform expression, log(1 + TPM) in each of {len(manifest["tissues"])}
tissues, from {", ".join(manifest["modalities"])} (IsoFormer-style, {manifest["aggregator"]}
aggregator). Load it with `isoflow.load_model("<this folder>")`; docs/bundle.md.

## Data
Dataset `{manifest["dataset"]["name"]}` (sha256 `{manifest["dataset"]["sha256"]}`):
{counts.get("train", 0)} training, {counts.get("valid", 0)} validation and
{counts.get("test", 0)} test transcripts, split by `{split.get("scheme", "unrecorded")}`
(a gene's isoforms on one side for `gene`; for `locus` those of every gene sharing a TSS or
exons with it, or a TSS within `locus_tss_distance` bp). {manifest.get("data") or ""}

Encoders:
{encoders}

Inputs: {_card_inputs(manifest)}.

## Test metrics
Mean over tissues on the {metrics.get("n_test")} test transcripts: R² {number(mean.get("r2"))},
Spearman {number(mean.get("spearman"))}, Pearson {number(mean.get("pearson"))};
within-gene Spearman {number(metrics.get("within_gene_spearman"))};
collapsed: {str(metrics.get("collapsed")).lower()}. Per tissue: `manifest.json` → `metrics`.

## Intended use
Ranking and comparing sequences of the kind it was trained on: annotated transcripts in
their genomic context, in the tissues listed in `manifest.json`.

## Limits
- Out of distribution for anything else: an episomal construct (an rAAV cassette, a
  plasmid reporter) has no chromatin or genomic neighbourhood, and the DNA around it in the
  window is not what the model saw; read its scores as relative, not as TPM.
- Trained on mean expression per tissue (GTEx bulk RNA-seq): no cell types, no individuals.
- A synthetic-data (demo) or tiny-encoder model demonstrates the pipeline only; its
  numbers say nothing about biology.
"""


def export_rule_bundle(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    inputs: Mapping[str, str],
    *,
    config: dict,
    experiment: dict,
) -> dict[str, Any]:
    """:func:`export_bundle` from an export rule's named inputs for one run
    (``isoflow.workflow.export_inputs``: ``dataset``, ``cache_{modality}``, ``genome``):
    what rule export_model runs for its run, and rule export_models for each of its runs."""
    cache_dirs = {
        key.removeprefix("cache_"): path for key, path in inputs.items() if key.startswith("cache_")
    }
    return export_bundle(
        run_dir,
        out_dir,
        config=config,
        experiment=experiment,
        dataset_path=inputs["dataset"],
        cache_dirs=cache_dirs,
        genome_fasta=inputs.get("genome"),
    )


def export_bundle(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: dict,
    experiment: dict,
    dataset_path: str | os.PathLike,
    cache_dirs: dict[str, str | os.PathLike] | None = None,
    genome_fasta: str | os.PathLike | None = None,
    check_n: int = CHECK_N,
    device: str | None = None,
) -> dict[str, Any]:
    """Write the bundle of the run in ``run_dir`` to ``out_dir`` (atomically); returns its
    manifest.

    ``config``: the settings the run was trained with (rule ``train``'s ``settings`` param,
    plus ``dna``, ``split``, ``dataset`` and ``demo`` when present); ``experiment``,
    ``dataset_path`` and ``cache_dirs``: as rule ``train`` had them. The checkpoint is the
    best one of exactly these settings and data (``checkpoints.best_checkpoint``). Before
    the folder is put in place, ``check_n`` test transcripts are predicted from their
    sequences by the bundle as loaded, and must match the run's ``predictions.parquet``
    (``CHECK_TOLERANCE``); the result is recorded in the manifest (``check``)."""
    from isoflow.checkpoints import best_checkpoint, run_fingerprint
    from isoflow.dataset import read_dataset
    from isoflow.settings import model_config, protein_config, rna_config, train_config

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    cache_dirs = dict(cache_dirs or {})
    fingerprint = run_fingerprint(config, experiment, dataset_path, cache_dirs, genome_fasta)
    checkpoint = best_checkpoint(run_dir, fingerprint)
    log.info("exporting %s", checkpoint)
    saved = read_checkpoint(checkpoint)
    hparams = saved.get("hyper_parameters") or {}
    state = {
        k.removeprefix("model."): v
        for k, v in saved["state_dict"].items()
        if k.startswith("model.")
    }
    cached_dims = {m: int(d) for m, d in (hparams.get("cached_dims") or {}).items()}

    frame, tissues = read_dataset(dataset_path)
    ckpt_tissues = list(hparams.get("tissues", tissues))
    if ckpt_tissues != list(tissues):
        n = min(len(ckpt_tissues), len(tissues))
        i = next((i for i in range(n) if ckpt_tissues[i] != tissues[i]), n)
        shown = [t[i] if i < len(t) else "none" for t in (ckpt_tissues, tissues)]
        raise InputError(
            checkpoint,
            "tissues",
            f"differ from the dataset's ({dataset_path}): tissue {i + 1} is {shown[0]} here, "
            f"{shown[1]} there; train the run again (rule train)",
        )
    widths = set((frame["window_end"] - frame["window_start"]).tolist())
    window = (config.get("dna") or {}).get("window")
    if len(widths) != 1 or (window is not None and widths != {int(window)}):
        raise InputError(
            dataset_path,
            "window_end",
            f"DNA windows of {sorted(widths)[:3]} bp; config dna.window is {window}: export "
            "with the config the dataset was built with",
        )
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    entries, keep = _encoder_entries(config, experiment, cache_dirs, cached_dims, state)
    train = train_config(config)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "run": run_name(experiment),
        "tissues": list(tissues),
        "modalities": [m for m in MODALITIES if m in experiment["modalities"]],
        "aggregator": experiment["aggregator"],
        "experiment": experiment,
        "model": model_config(config),
        "dna": {"window": widths.pop()},
        "rna": rna_config(config),
        "protein": protein_config(config),
        "encoders": entries,
        "precision": train["precision"],
        "eval_batch_size": int(train["eval_batch_size"] or train["batch_size"]),
        "dataset": {
            "name": (config.get("dataset") or {}).get("name") or Path(dataset_path).stem,
            "sha256": fingerprint["dataset"]["sha256"],
            "transcripts": {s: int(n) for s, n in frame["split"].value_counts().items()},
        },
        "split": config.get("split"),
        "data": (
            "Synthetic demo data (isoflow.demo), not GTEx."
            if (config.get("demo") or {}).get("enabled")
            else None
        ),
        "checkpoint": {
            "file": checkpoint.name,
            "epoch": saved.get("epoch"),
            "sha256": cached_digest(checkpoint),  # hashed when the run tested it
            "fingerprint": fingerprint,
        },
        "metrics": metrics,
    }
    # torch's CPU kernels the export check runs on (rule export_model's: the workflow's)
    kernels = kernels_record(
        torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    )
    if kernels is not None:
        manifest[CPU_KERNELS] = kernels
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        torch.save(state, tmp / WEIGHTS)
        for name, encoder in keep.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            torch.save(encoder.state_dict(), tmp / name)
        (tmp / CARD).write_text(_card(manifest, frame))
        _write_manifest(tmp, manifest)
        model = load_model(tmp, device=device)
        manifest["check"] = _check(model, run_dir, frame, dataset_path, genome_fasta, check_n)
        _write_manifest(tmp, manifest)
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """``folder/manifest.json`` with ``digests`` (of the weight files already in ``folder``
    and of the manifest itself), which are also set in ``manifest``."""
    plain = {k: v for k, v in manifest.items() if k != DIGESTS}
    plain = json.loads(json.dumps(plain, allow_nan=False, default=str))
    digests = {name: file_digest(folder / name) for name in _weight_files(plain)}
    digests[MANIFEST] = manifest_digest(plain)
    manifest[DIGESTS] = digests
    text = json.dumps({**plain, DIGESTS: digests}, indent=2, allow_nan=False) + "\n"
    (folder / MANIFEST).write_text(text)


def _check(
    model: Model,
    run_dir: Path,
    frame: pd.DataFrame,
    dataset_path,
    genome_fasta,
    check_n: int,
) -> dict[str, Any]:
    """Predict the first ``check_n`` test transcripts (dataset order) with the bundle and
    compare with the run's ``predictions.parquet``; beyond ``CHECK_TOLERANCE`` is an error."""
    test = frame[frame["split"] == "test"].head(check_n)
    if "dna" in model.modalities:
        genome_fasta = genome_fasta or frame.attrs.get("genome")
    else:
        genome_fasta = None
    predicted = model.predict(dataset_inputs(test, genome_fasta))
    expected = _run_predictions(run_dir, test["transcript_id"], model.tissues)
    diff = float(np.max(np.abs(predicted - expected))) if len(test) else 0.0
    compiled = any(e.get("compile") for e in model.card["encoders"].values() if e)
    kind = "bf16" if model.autocast else ("compiled cache" if compiled else "float32")
    tolerance = CHECK_TOLERANCE[kind]
    if not diff <= tolerance:
        raise InputError(
            run_dir / "predictions.parquet",
            None,
            f"the exported model predicts the first {len(test)} test transcripts up to "
            f"{diff:.3g} away from the run's predictions (tolerance {tolerance}, {kind}): "
            "the bundle does not reproduce the run",
        )
    log.info("check: %d test transcripts, max |diff| %.3g (%s)", len(test), diff, kind)
    return {
        "n": len(test),
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "arithmetic": kind,
        "device": model.device.type,
    }


def _run_predictions(run_dir: Path, transcript_ids, tissues: list[str]) -> np.ndarray:
    """``(n, n_tissues)`` of a run's ``predictions.parquet`` for ``transcript_ids``."""
    table = pd.read_parquet(run_dir / "predictions.parquet")
    wide = table.pivot(index="transcript_id", columns="tissue", values="predicted")
    return wide.loc[list(transcript_ids), list(tissues)].to_numpy(dtype=np.float32)
