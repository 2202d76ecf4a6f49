"""``isoflow explain``: what drives a trained model's prediction for one sequence.

Two views (docs/constructs.md, "Explain a prediction"):

* **In-silico mutagenesis (ISM)** over a region of a construct (a part name or cassette
  offsets) or of a GENCODE transcript from the dataset (a part name or DNA-window offsets):
  every single-base substitution (3 per position), batched. A substitution changes the DNA
  window and, where the base is transcribed, the RNA and, in the CDS, the protein
  (re-translated as the reference was; a new stop truncates it). Only the modalities a
  substitution changes where their encoder reads (``variants.seen_changes``) are encoded
  again; the reference's embeddings of the others are reused (``Model.embed`` /
  ``Model.head``), and a protein that many substitutions share (a synonymous change leaves
  it as it was) is encoded once. Effect = alt − ref prediction, in the model's units
  (log(1 + TPM); a fine-tuned bundle's table's), per tissue;
  NaN for a substitution no encoder sees (not 0: the model cannot tell, which is not
  "neutral"). A transcript's rows also carry their genome position and plus-strand letters
  (``chrom``, ``genomic_pos``, ``genomic_ref``, ``genomic_alt``).
* **Attention by region**: how much each head of each cross-attention layer attends to the
  5'UTR / CDS / 3'UTR tokens of the RNA (and the CDS, i.e. all, of the protein), averaged
  over transcripts (whether and where the IsoFormer paper shows the same view was not
  checked against arXiv 2406.14150). A key token (a pooled
  cache slot, or an encoder token) is mapped back to the nucleotides (residues) it covers
  by the encoder's tokenisation and ``embed.pool_sequence``' windows, then to regions by
  overlap. Attention weights say where a head looks, not what the prediction depends on.

Logo convention (ISM × reference one-hot, mean-centred per position): the height of the
reference letter at a position is the prediction with the reference base minus the mean
prediction over all four bases there, i.e. ``−(sum of the three alt effects) / 4``; as in
Avanti Shrikumar's ISM code for DeepLIFT/TF-MoDISco (kundajelab, "ISM score at a base is the
prediction when that base is present minus the average prediction across all 4 possible
bases"). Positive: the reference base raises the prediction.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from isoflow.alphabet import is_missing, translate_cds, truncate
from isoflow.commands import (
    ANNOTATION_FLAGS,
    BATCH_SIZE_HELP,
    CONSTRUCTS_FLAGS,
    DEVICE_HELP,
    GENOME_FLAGS,
    MODEL_FLAGS,
    OUT_FLAGS,
    REPLACED,
    add_placement_arguments,
    positive_int,
)
from isoflow.errors import InputError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from isoflow.bundle import Model

log = logging.getLogger("isoflow.explain")

HELP = (
    "Explain a prediction: in-silico mutagenesis of a construct or transcript region "
    "(per-base effect map, logo track) and cross-attention by RNA region"
)

BASES = "ACGT"
# Regions of an RNA key's tokens, in plotting order; a protein's tokens are all "cds".
RNA_REGIONS = ("utr5", "cds", "utr3", "polya")
# Consequence of a substitution on the inputs (column ``consequence``).
CONSEQUENCES = ("dna_only", "rna", "synonymous", "missense", "nonsense", "stop_lost")
PART_COLORS = {
    "upstream": "#cbd5e0",
    "promoter": "#90cdf4",
    "utr5": "#9ae6b4",
    "cds": "#fbd38d",
    "utr3": "#d6bcfa",
    "polya": "#feb2b2",
    "downstream": "#e2e8f0",
    "intron": "#edf2f7",
    "exon": "#9ae6b4",
}
BASE_COLORS = {"A": "#38a169", "C": "#3182ce", "G": "#d69e2e", "T": "#e53e3e"}
LETTERS_UP_TO = 400  # longer regions are drawn as coloured bars, not letters


# ---------------------------------------------------------------------------- subjects


@dataclass
class Subject:
    """What explain mutates: the reference inputs and where each base of it lands.

    Sites are the bases of the subject's extent (a construct's cassette; a transcript's DNA
    window), indexed by ``coord`` (cassette offset, or window index), each with its DNA
    window index ``window_pos`` and RNA index ``rna_pos`` (-1: not in it), ``part`` and
    ``ref`` letter. ``cds``: the CDS in RNA coordinates; ``translate(cds_seq)`` makes the
    protein as the reference's was made. ``rna_regions``: (region, start, end) covering the
    RNA; ``bands``: (part, start, end) in ``coord`` units, for the figure.
    """

    id: str
    kind: str
    dna: str
    rna: str
    protein: str | None
    coord: np.ndarray
    window_pos: np.ndarray
    rna_pos: np.ndarray
    part: np.ndarray
    ref: np.ndarray
    cds: tuple[int, int] | None
    translate: Callable[[str], str] | None
    rna_regions: list[tuple[str, int, int]]
    bands: list[tuple[str, int, int]]
    # a transcript's place on the genome: its contig, strand and the 0-based plus-strand
    # coordinate of each site; None for a construct (no genome)
    chrom: str | None = None
    strand: str | None = None
    genomic: np.ndarray | None = None
    # where it was read, for messages: a construct's ``source`` (``file:line`` or
    # ``file:record``), a transcript's dataset
    source: str | None = None

    @property
    def inputs(self):
        from isoflow.bundle import ModelInput

        return ModelInput(self.id, self.dna, self.rna, self.protein)


def _bands(part: np.ndarray, coord: np.ndarray) -> list[tuple[str, int, int]]:
    """Runs of one part name as (part, first coord, last coord + 1)."""
    out: list[tuple[str, int, int]] = []
    for i, name in enumerate(part):
        if out and out[-1][0] == name and out[-1][2] == coord[i]:
            out[-1] = (name, out[-1][1], int(coord[i]) + 1)
        else:
            out.append((str(name), int(coord[i]), int(coord[i]) + 1))
    return out


def construct_subject(
    construct,
    *,
    window: int,
    fill: str = "N",
    background: str | None = None,
    polya_in_rna: bool = False,
    polya_tail: int = 0,
) -> Subject:
    """A construct as :func:`isoflow.constructs.construct_inputs` feeds it; sites are its
    cassette's bases (``coord`` = 0-based cassette offset)."""
    from isoflow.constructs import construct_inputs

    inputs = construct_inputs(
        construct,
        window=window,
        fill=fill,
        background=background,
        polya_in_rna=polya_in_rna,
        polya_tail=polya_tail,
    )
    cassette, tss, spans = construct.cassette, construct.tss, construct.spans
    coord = np.arange(len(cassette), dtype=np.int64)
    window_pos = coord - tss + window // 2
    window_pos[(window_pos < 0) | (window_pos >= window)] = -1
    part = np.empty(len(cassette), dtype=object)
    for name, (a, b) in spans.items():
        part[a:b] = name
    rna_parts = ["utr5", "cds", "utr3"] + (["polya"] if polya_in_rna and "polya" in spans else [])
    rna_pos = np.full(len(cassette), -1, dtype=np.int64)
    regions = []
    for name in rna_parts:
        a, b = spans[name]
        rna_pos[a:b] = coord[a:b] - tss
        regions.append((name, a - tss, b - tss))
    if polya_tail:
        regions.append(("polya", len(inputs.rna) - polya_tail, len(inputs.rna)))
    first = len(construct.parts["utr5"])
    return Subject(
        id=construct.id,
        kind="construct",
        dna=inputs.dna,
        rna=inputs.rna,
        protein=inputs.protein or None,
        coord=coord,
        window_pos=window_pos,
        rna_pos=rna_pos,
        part=part,
        ref=np.array(list(cassette)),
        cds=(first, first + len(construct.parts["cds"])),
        translate=translate_cds,  # Construct.protein: table 1, stop dropped
        rna_regions=regions,
        bands=[(name, a, b) for name, (a, b) in spans.items()],
        source=construct.source or None,
    )


def transcript_subjects(
    frame: pd.DataFrame,
    annotation: pd.DataFrame,
    genome_fasta: str | None,
) -> list[Subject]:
    """Dataset rows (``dataset.read_dataset``) as subjects: the inputs training read
    (``bundle.dataset_inputs``: the genome window, the dataset's RNA and protein), sites =
    the DNA window (``coord`` = window index, TSS at ``window // 2``), mapped onto the RNA
    through the annotation's exons (``transcripts.parquet``); the protein re-made as rule
    sequences made it (``sequences.cds_bounds``, ``alphabet.translate_cds`` with the
    contig's code, phase, start and selenocysteines); ``genomic``: each window index's
    0-based genome coordinate (``window_start + index`` on +, ``window_end − 1 − index``
    on −). The dataset's RNA must be the genome's exons and its protein their translation,
    or it is an error."""
    from isoflow.alphabet import genetic_code
    from isoflow.bundle import dataset_inputs
    from isoflow.sequences import cds_bounds

    if not genome_fasta:
        raise InputError(None, "genome", "a transcript's DNA window needs the genome FASTA")
    by_id = annotation.set_index("transcript_id")
    inputs = dataset_inputs(frame, genome_fasta)
    subjects = []
    for row, inp in zip(frame.itertuples(index=False), inputs, strict=True):
        tid = row.transcript_id
        if tid not in by_id.index:
            raise InputError(None, tid, "not in the annotation (transcripts.parquet)")
        ann = by_id.loc[tid]
        window = len(inp.dna)
        starts = np.asarray(ann["exon_starts"], dtype=np.int64)
        ends = np.asarray(ann["exon_ends"], dtype=np.int64)
        minus = row.strand == "-"
        index = np.arange(window, dtype=np.int64)
        genomic = (int(row.window_end) - 1 - index) if minus else (int(row.window_start) + index)
        offsets = np.concatenate([[0], np.cumsum(ends - starts)])
        total = int(offsets[-1])
        rna_pos = np.full(window, -1, dtype=np.int64)
        for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
            inside = (genomic >= s) & (genomic < e)
            rna_pos[inside] = offsets[k] + genomic[inside] - s
        if minus:
            rna_pos = np.where(rna_pos >= 0, total - 1 - rna_pos, -1)
        rna = str(row.rna_seq)
        if total != len(rna):
            raise InputError(None, tid, f"RNA is {len(rna)} nt, its exons {total}")
        mapped = np.flatnonzero(rna_pos >= 0)
        dna_letters = np.frombuffer(inp.dna.encode("ascii"), dtype="S1")
        rna_letters = np.frombuffer(rna.encode("ascii"), dtype="S1")
        known = dna_letters[mapped] != b"N"
        if (dna_letters[mapped][known] != rna_letters[rna_pos[mapped]][known]).any():
            raise InputError(None, tid, "the dataset's RNA differs from the genome's exons")
        cds, translate, protein = None, None, row.protein_seq
        if not pd.isna(ann["cds_start"]) and not is_missing(protein):
            exons = list(zip(starts.tolist(), ends.tolist(), strict=True))
            cds = cds_bounds(exons, row.strand, int(ann["cds_start"]), int(ann["cds_end"]))
            phase = 0 if pd.isna(ann["cds_phase"]) else int(ann["cds_phase"])
            tags = set([] if ann["tags"] is None else [str(t) for t in ann["tags"]])
            seleno = [] if ann["selenocysteines"] is None else list(ann["selenocysteines"])
            first = cds[0]
            options = {
                "table": genetic_code(row.chrom),
                "phase": phase,
                "start_complete": "cds_start_NF" not in tags,
                "selenocysteines": [int(p) - first for p in seleno],
            }

            def translate(seq: str, options=options) -> str:
                return translate_cds(seq, **options)

            if translate(rna[cds[0] : cds[1]]) != protein:
                raise InputError(None, tid, "the dataset's protein is not its CDS translated")
        centre = window // 2
        part = np.where(index < centre, "upstream", "downstream").astype(object)
        lo_tx = min(int(ann["tx_start"]), int(ann["tx_end"]))
        in_tx = (genomic >= lo_tx) & (genomic < int(ann["tx_end"]))
        part[in_tx] = "intron"
        exonic = rna_pos >= 0
        if cds is None:
            part[exonic] = "exon"
            regions = [("exon", 0, len(rna))]
        else:
            part[exonic & (rna_pos < cds[0])] = "utr5"
            part[exonic & (rna_pos >= cds[0]) & (rna_pos < cds[1])] = "cds"
            part[exonic & (rna_pos >= cds[1])] = "utr3"
            regions = [("utr5", 0, cds[0]), ("cds", cds[0], cds[1]), ("utr3", cds[1], len(rna))]
        subjects.append(
            Subject(
                id=tid,
                kind="transcript",
                dna=inp.dna,
                rna=rna,
                protein=None if is_missing(protein) else protein,
                coord=index,
                window_pos=index.copy(),
                rna_pos=rna_pos,
                part=part,
                ref=np.array(list(inp.dna)),
                cds=cds,
                translate=translate,
                rna_regions=[r for r in regions if r[2] > r[1]],
                bands=_bands(part, index),
                chrom=str(row.chrom),
                strand=str(row.strand),
                genomic=genomic,
            )
        )
    return subjects


def read_transcripts(
    dataset_path: str | Path,
    annotation_path: str | Path,
    transcript_ids: Sequence[str] | None = None,
    *,
    split: str | None = None,
    coding_only: bool = False,
    limit: int | None = None,
    genome_fasta: str | None = None,
) -> list[Subject]:
    """Subjects of dataset transcripts: the given IDs (each must be there), or the rows of a
    ``split`` in dataset order (``coding_only``: with a protein; at most ``limit``)."""
    from isoflow.dataset import read_dataset

    frame, _ = read_dataset(dataset_path)
    if transcript_ids is not None:
        chosen = frame[frame["transcript_id"].isin(list(transcript_ids))]
        missing = sorted(set(transcript_ids) - set(chosen["transcript_id"]))
        if missing:
            raise InputError(dataset_path, missing[0], "transcript is not in the dataset")
        chosen = chosen.set_index("transcript_id", drop=False).loc[list(transcript_ids)]
    else:
        chosen = frame if split is None else frame[frame["split"] == split]
        if coding_only:
            chosen = chosen[chosen["protein_seq"].map(lambda p: not is_missing(p))]
        if limit is not None:
            chosen = chosen.head(limit)
    ids = list(chosen["transcript_id"])
    annotation = pd.read_parquet(annotation_path, filters=[("transcript_id", "in", ids)])
    if not genome_fasta and frame.attrs.get("genome"):
        genome_fasta = frame.attrs["genome"]
        if not Path(genome_fasta).exists():  # a relative path read from another folder
            where = "" if Path(genome_fasta).is_absolute() else ", relative to where it was built"
            raise InputError(
                genome_fasta,
                None,
                f"genome FASTA does not exist (the dataset {dataset_path}'s recorded genome "
                f"path{where}; give --genome)",
            )
    subjects = transcript_subjects(chosen, annotation, genome_fasta)
    for subject in subjects:
        subject.source = str(dataset_path)
    return subjects


# ---------------------------------------------------------------------------- regions


_SPAN = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def region_sites(subject: Subject, region: str | None) -> np.ndarray:
    """Indices of the sites ``region`` names: a part name (every base of that part), or
    ``START-END`` (0-based, half-open, in ``coord`` units: cassette offsets of a construct,
    DNA-window indices of a transcript, TSS at ``window // 2``). ``None``: a construct's
    whole cassette (a transcript's window is too long to take whole: name a region). Bases
    that are not A/C/G/T, and cassette bases in neither the window nor the RNA, are left
    out (logged)."""
    if region is None:
        if subject.kind != "construct":
            raise InputError(subject.source, subject.id, "give a region (a part name or START-END)")
        chosen = np.ones(len(subject.coord), dtype=bool)
    elif (match := _SPAN.match(region)) is not None:
        start, end = int(match.group(1)), int(match.group(2))
        chosen = (subject.coord >= start) & (subject.coord < end)
        first, stop = int(subject.coord[0]), int(subject.coord[-1]) + 1
        if chosen.any() and (start < first or end > stop):  # was silently clipped
            raise InputError(
                subject.source,
                subject.id,
                f"region {region} reaches past the {subject.kind}'s coordinates "
                f"{first}-{stop} (0-based half-open); give a region within them",
            )
        if end <= start or not chosen.any():
            raise InputError(
                subject.source,
                subject.id,
                f"region {region} holds no base (0-based half-open; {subject.kind} "
                f"coordinates run {int(subject.coord[0])}-{int(subject.coord[-1]) + 1})",
            )
    else:
        chosen = subject.part == region
        if not chosen.any():
            parts = list(dict.fromkeys(str(p) for p in subject.part))
            raise InputError(
                subject.source,
                subject.id,
                f"region {region!r} is neither START-END nor a part of this {subject.kind} "
                f"({', '.join(parts)})",
            )
    acgt = np.isin(subject.ref, list(BASES))
    reachable = (subject.window_pos >= 0) | (subject.rna_pos >= 0)
    keep = chosen & acgt & reachable
    dropped = int(chosen.sum() - keep.sum())
    if dropped:
        log.info(
            "%s: %d base(s) of the region left out (not A/C/G/T, or outside both the DNA "
            "window and the RNA)",
            subject.id,
            dropped,
        )
    if not keep.any():
        raise InputError(subject.source, subject.id, _nothing_to_mutate(subject, region, chosen))
    return np.flatnonzero(keep)


def _nothing_to_mutate(subject: Subject, region: str | None, chosen: np.ndarray) -> str:
    """Why none of the ``chosen`` sites of ``region`` can be mutated, and what would help."""
    outside = int((chosen & (subject.window_pos < 0) & (subject.rna_pos < 0)).sum())
    unknown = int((chosen & ~np.isin(subject.ref, list(BASES))).sum())
    why = []
    if outside:
        seen = subject.coord[subject.window_pos >= 0]
        window = f"{int(seen[0])}-{int(seen[-1]) + 1}, 0-based half-open" if len(seen) else "none"
        why.append(
            f"{outside} lie outside both the DNA window (cassette offsets {window}) and the "
            "RNA, so no input reads them"
        )
    if unknown:
        why.append(f"{unknown} are not A/C/G/T")
    hint = ""
    if outside and subject.kind == "construct" and bool((chosen & (subject.part == "polya")).any()):
        hint = "; --polya-in-rna puts the polyA part in the RNA, where it is mutable"
    elif outside:
        hint = "; a region nearer the TSS, or a bundle with a wider DNA window, reaches them"
    return (
        f"region {region} holds no base to mutate: of its {int(chosen.sum())} base(s), "
        f"{' and '.join(why)}{hint}"
    )


# ---------------------------------------------------------------------------- mutants


@dataclass(frozen=True)
class Mutant:
    site: int
    alt: str
    inputs: Any
    changed: tuple[str, ...]  # modalities whose sequence differs from the reference's
    consequence: str


def _cut_at_new_stop(mutant: str, ref: str) -> str:
    """``mutant`` up to its first stop that the reference does not hold there."""
    at = mutant.find("*")
    while at >= 0:
        if at >= len(ref) or ref[at] != "*":
            return mutant[:at]
        at = mutant.find("*", at + 1)
    return mutant


def mutate(subject: Subject, site: int, alt: str) -> Mutant:
    """The inputs with base ``alt`` at ``site``: the DNA window where the site is in it, the
    RNA where it is transcribed, the protein re-translated where it is in the CDS (a new
    stop cuts it; a lost stop adds the codon's residue, no read-through)."""
    from isoflow.bundle import ModelInput

    w, r = int(subject.window_pos[site]), int(subject.rna_pos[site])
    dna, rna, protein = subject.dna, subject.rna, subject.protein
    changed = []
    if w >= 0:
        dna = dna[:w] + alt + dna[w + 1 :]
        changed.append("dna")
    consequence = "dna_only"
    if r >= 0:
        rna = rna[:r] + alt + rna[r + 1 :]
        changed.append("rna")
        consequence = "rna"
        if subject.cds is not None and subject.cds[0] <= r < subject.cds[1]:
            ref_protein = subject.protein or ""
            new = _cut_at_new_stop(
                subject.translate(rna[subject.cds[0] : subject.cds[1]]), ref_protein
            )
            if new == ref_protein:
                consequence = "synonymous"
            else:
                changed.append("protein")
                protein = new or None
                consequence = (
                    "nonsense"
                    if len(new) < len(ref_protein)
                    else "stop_lost"
                    if len(new) > len(ref_protein)
                    else "missense"
                )
    inputs = ModelInput(subject.id, dna, rna, protein)
    return Mutant(site, alt, inputs, tuple(changed), consequence)


def mutants(subject: Subject, sites: np.ndarray) -> Iterator[Mutant]:
    """Every single-base substitution at ``sites`` (3 per site, alts in ACGT order)."""
    for site in sites:
        ref = str(subject.ref[site])
        for alt in BASES:
            if alt != ref:
                yield mutate(subject, int(site), alt)


# ---------------------------------------------------------------------------- ISM


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}
# Columns of the ISM table before the tissues' (``ism``).
ISM_COLUMNS = (
    "id",
    "position",
    "window_pos",
    "rna_pos",
    "part",
    "ref",
    "alt",
    "chrom",
    "genomic_pos",
    "genomic_ref",
    "genomic_alt",
    "consequence",
    "changed",
    "seen",
)


def _genomic(subject: Subject, site: int, alt: str) -> tuple:
    """``(chrom, 1-based position, plus-strand ref, plus-strand alt)`` of a transcript's
    site; NA for a construct (no genome)."""
    if subject.genomic is None:
        return (None, None, None, None)
    ref = str(subject.ref[site])
    if subject.strand == "-":
        ref, alt = COMPLEMENT[ref], COMPLEMENT[alt]
    return (subject.chrom, int(subject.genomic[site]) + 1, ref, alt)


def ism(
    model: Model,
    subject: Subject,
    sites: np.ndarray,
    *,
    reencode_changed_only: bool = True,
    batch_size: int | None = None,
    chunk: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Effects of every substitution at ``sites``: one row per site × alt with ``id``,
    ``position`` (``coord``), ``window_pos``, ``rna_pos``, ``part``, ``ref``, ``alt`` (all
    along the subject: the cassette, or the transcript's strand), for a transcript
    ``chrom``, ``genomic_pos`` (1-based) and the plus-strand ``genomic_ref`` /
    ``genomic_alt`` (NA for a construct), ``consequence``, ``changed`` (the modalities the
    model reads whose sequence the substitution changed, ``+``-joined), ``seen`` (those of
    them whose change lies where the model's encoder reads, ``variants.seen_changes``: not
    past Nucleotide Transformer's central DNA crop, nor the RNA / protein cut, ``Model.raw_cuts``),
    then one column per tissue: alt − ref prediction, in the model's units
    (:func:`isoflow.bundle.output_units`); NaN where ``seen`` is
    empty (the model reads no changed base: no prediction, not a neutral one).

    ``reencode_changed_only`` (the default) embeds the reference once and, per substitution,
    only the modalities whose change it sees (a protein shared by several substitutions
    once); ``False`` predicts every mutant whole (``Model.predict``), the naive path it
    must agree with. Mutants are built and scored ``chunk`` at a time (default 8 batches),
    so memory does not grow with the region."""
    from isoflow.variants import seen_changes

    batch_size = model.batch_size_or_default(batch_size)
    chunk = int(chunk or 8 * batch_size)
    ref_inputs = subject.inputs
    if reencode_changed_only:
        ref_emb = model.embed([ref_inputs], batch_size=batch_size)
        ref_pred = model.head(ref_emb)[0]
    else:
        ref_pred = model.predict([ref_inputs], batch_size=batch_size)[0]
    total = 3 * len(sites)
    rows: list[tuple] = []
    effects: list[np.ndarray] = []
    views: dict[str, Any] = {}  # the reference's encoder_input by modality
    done = 0
    for batch in _chunks(mutants(subject, sites), chunk):
        read = [tuple(c for c in m.changed if c in model.modalities) for m in batch]
        seen = [
            seen_changes(model, ref_inputs, m.inputs, c, views)
            for m, c in zip(batch, read, strict=True)
        ]
        values = np.full((len(batch), len(model.tissues)), np.nan)
        which = [i for i, s in enumerate(seen) if s]
        if which:
            if reencode_changed_only:
                predicted = _predict_changed(
                    model, [batch[i] for i in which], [seen[i] for i in which], ref_emb, batch_size
                )
            else:
                inputs = [batch[i].inputs for i in which]
                predicted = model.predict(inputs, batch_size=batch_size)
            values[which] = predicted - ref_pred[None, :]
        effects.append(values)
        for m, c, s in zip(batch, read, seen, strict=True):
            rows.append(
                (
                    subject.id,
                    int(subject.coord[m.site]),
                    int(subject.window_pos[m.site]),
                    int(subject.rna_pos[m.site]),
                    str(subject.part[m.site]),
                    str(subject.ref[m.site]),
                    m.alt,
                    *_genomic(subject, m.site, m.alt),
                    m.consequence,
                    "+".join(c),
                    "+".join(s),
                )
            )
        done += len(batch)
        if progress is not None:
            progress(done, total)
    frame = pd.DataFrame(rows, columns=list(ISM_COLUMNS))
    frame["genomic_pos"] = frame["genomic_pos"].astype("Int64")
    values = np.concatenate(effects) if effects else np.zeros((0, len(model.tissues)))
    return pd.concat(
        [frame, pd.DataFrame(values.astype(np.float32), columns=model.tissues)], axis=1
    )


def _predict_changed(
    model: Model,
    batch: list[Mutant],
    seen: list[tuple[str, ...]],
    ref_emb: dict[str, list],
    batch_size: int,
) -> np.ndarray:
    """``head`` of the reference's embeddings with each mutant's ``seen`` modalities
    encoded anew (one ``embed`` call per modality; equal sequences encoded once): a change
    the encoder does not read leaves its embedding the reference's."""
    embeddings = {m: [ref_emb[m][0]] * len(batch) for m in model.modalities}
    for modality in model.modalities:
        which = [i for i, s in enumerate(seen) if modality in s]
        if not which:
            continue
        distinct: dict[Any, int] = {}
        unique = []
        for i in which:
            seq = getattr(batch[i].inputs, modality)
            if seq not in distinct:
                distinct[seq] = len(unique)
                unique.append(batch[i].inputs)
        encoded = model.embed(unique, [modality], batch_size=batch_size)[modality]
        for i in which:
            embeddings[modality][i] = encoded[distinct[getattr(batch[i].inputs, modality)]]
    return model.head(embeddings, batch_size=batch_size)


def summarize(effects: pd.DataFrame, tissues: Sequence[str]) -> pd.DataFrame:
    """Per position and tissue, over the alts with an effect (NaN ones, which the model
    cannot see, left out): ``score`` (the logo height of the reference base: ref minus the
    mean prediction over the reference and those alts = −(sum of their effects)/(n + 1),
    −(sum of the 3 alt effects)/4 when all are seen), ``mean_effect`` (their mean) and
    ``max_abs_effect`` (their largest |effect|), NaN where no alt has one; ``n_alts`` (alts
    mutated) and ``n_seen`` (with an effect); plus ``mean`` over tissues as a tissue named
    ``mean``. The genomic columns (``chrom``, ``genomic_pos``, ``genomic_ref``: plus
    strand) are NA for a construct."""
    keys = ["id", "position", "window_pos", "rna_pos", "part", "ref"]
    keys += ["chrom", "genomic_pos", "genomic_ref"]
    long = effects.melt(id_vars=keys, value_vars=list(tissues), var_name="tissue")
    mean = effects[keys].assign(tissue="mean", value=effects[list(tissues)].mean(axis=1))
    long = pd.concat([long, mean], ignore_index=True)
    long["magnitude"] = long["value"].abs()
    grouped = long.groupby([*keys, "tissue"], sort=False, dropna=False)
    values = grouped["value"]
    seen = values.count()
    out = pd.DataFrame(
        {
            "score": -values.sum(min_count=1) / (seen + 1.0),
            "mean_effect": values.mean(),
            # the group's largest |effect|, one vectorised max (a Python function per
            # group cost ~1 s of the demo's explain job for its 7,200 groups)
            "max_abs_effect": grouped["magnitude"].max(),
            "n_alts": values.size(),
            "n_seen": seen,
        }
    ).reset_index()
    return out.sort_values(["tissue", "position"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------- attention


def token_spans(encoder, seq: str) -> list[tuple[int, int]] | None:
    """``[start, end)`` in ``seq`` of each token the encoder returns for it (after its own
    truncation), or None for an encoder whose tokens this does not know (then spread evenly).
    Nucleotide Transformer (RNA): non-overlapping 6-mers from the 5' end, a 6-mer with a
    letter outside ACGT and the last < 6 nt as single tokens (``token_ids``); ESM-2: one
    token per residue, the first ``max_len``."""
    from isoflow.model.encoders.esm2 import Esm2Encoder
    from isoflow.model.encoders.nucleotide_transformer import (
        NT_KMER,
        NucleotideTransformerEncoder,
    )

    if isinstance(encoder, Esm2Encoder):
        return [(i, i + 1) for i in range(min(len(seq), encoder.max_len))]
    if isinstance(encoder, NucleotideTransformerEncoder) and encoder.modality == "rna":
        budget = encoder.max_len - 1
        kept = truncate(seq.upper(), budget * NT_KMER, encoder.truncate)
        offset = 0 if encoder.truncate == "keep_5prime" else len(seq) - len(kept)
        full = len(kept) - len(kept) % NT_KMER
        spans: list[tuple[int, int]] = []
        for start in range(0, full, NT_KMER):
            if kept[start : start + NT_KMER] in encoder.vocab:
                spans.append((start, start + NT_KMER))
            else:
                spans.extend((start + j, start + j + 1) for j in range(NT_KMER))
        spans.extend((j, j + 1) for j in range(full, len(kept)))
        if len(spans) > budget:
            spans = spans[:budget] if encoder.truncate == "keep_5prime" else spans[-budget:]
        return [(a + offset, b + offset) for a, b in spans]
    return None


def slot_regions(
    model: Model,
    modality: str,
    seq: str,
    regions: Sequence[tuple[str, int, int]],
    n_slots: int,
) -> np.ndarray:
    """``(n_slots, len(regions))``: the share of each key slot's nucleotides (residues) in
    each region. A slot of a cached modality is the mean of the encoder tokens
    ``embed.pool_sequence`` put in it (its weights, taken by pooling an identity matrix); a
    token covers the letters :func:`token_spans` gives it. Rows sum to 1 where the regions
    cover the sequence."""
    import torch

    from isoflow.embed import pool_sequence

    if modality in model.frozen:  # the whole sequence: the frozen encoder cuts it
        encoder, pool_to = model.frozen[modality]
        read, offset = seq, 0
    else:  # cut first as the model cuts a raw input (Model._sequence)
        encoder, pool_to = model.network.encoders[modality], None
        letters, mode = model.raw_cuts[modality]
        read = truncate(seq, letters, mode)
        offset = len(seq) - len(read) if mode == "keep_3prime" else 0
    spans = token_spans(encoder, read)
    if spans is None:  # an encoder whose tokens are not known here: slots spread evenly
        edges = np.linspace(0, len(read), n_slots + 1)
        spans, pool_to = [(edges[i], edges[i + 1]) for i in range(n_slots)], None
    # each token's overlap with each region over its length, all pairs at once (a loop
    # over tokens x regions in Python was a quarter of attention_by_region's CPU time)
    bounds = np.asarray(spans).reshape(-1, 2) + offset
    starts, ends = bounds[:, :1], bounds[:, 1:]
    lows = np.asarray([lo for _, lo, _ in regions]).reshape(1, -1)
    highs = np.asarray([hi for _, _, hi in regions]).reshape(1, -1)
    overlap = np.maximum(np.minimum(ends, highs) - np.maximum(starts, lows), 0)
    shares = overlap / np.maximum(ends - starts, 1e-12)
    if pool_to is not None:  # an int (adaptive) or a positional pooling mapping
        eye = torch.eye(len(bounds), dtype=torch.float64)
        per_token = int(getattr(encoder, "letters_per_token", 1))
        weights = pool_sequence(eye, len(bounds), pool_to, modality, per_token)
        shares = weights.numpy() @ shares
    if len(shares) != n_slots:
        raise ValueError(
            f"{modality}: {len(shares)} token slots mapped, the model read {n_slots}: the "
            "encoder's tokenisation is not the one token_spans knows"
        )
    return shares


def check_attention_bundle(path: str | Path | None, manifest: dict) -> None:
    """Refuse, in one line naming the bundle, one whose attention cannot be mapped by region:
    not a cross_attention aggregator, or no RNA or protein among its modalities (then its
    only key is the DNA, which has no regions). From the manifest, so before the model
    loads and before any ISM runs."""
    if manifest["aggregator"] != "cross_attention":
        raise InputError(
            path,
            "aggregator",
            f"is {manifest['aggregator']}: attention by region needs a cross_attention "
            "bundle; give one, or leave out --attention",
        )
    # the cross-attention's keys are every modality but the first (the query), or the query
    # itself when it is alone: an RNA or protein key exactly when the bundle reads either
    if not any(m in ("rna", "protein") for m in manifest["modalities"]):
        raise InputError(
            path,
            "modalities",
            f"reads {'+'.join(manifest['modalities'])} only: attention by region maps RNA "
            "or protein keys; give a bundle that reads RNA or protein, or leave out --attention",
        )


def attention_by_region(
    model: Model, subjects: Sequence[Subject], *, batch_size: int | None = None
) -> pd.DataFrame:
    """Share of each head's attention on each region of its key modality, per layer,
    averaged over ``subjects`` (each weighs the same; over its real query tokens).

    Rows: ``layer`` (0-based), ``key`` (rna, protein), ``head``, ``region``, ``share``
    (mean), ``sd`` (over subjects), ``n`` (subjects with that key: a non-coding transcript
    has no protein, and an RNA without a CDS has no 5'UTR/CDS/3'UTR split and is left
    out). A DNA key (a DNA-only model) is not mapped. For each layer, key and head the
    shares over regions sum to 1."""
    import torch

    from isoflow.bundle import _padded

    check_attention_bundle(model.path, model.card)
    batch_size = model.batch_size_or_default(batch_size)
    aggregator = model.network.aggregator
    keys = [m for m in aggregator.key_modalities if m in ("rna", "protein")]
    query = aggregator.query_modality
    collected: dict[tuple[int, str], list[np.ndarray]] = {}
    region_names: dict[str, list[str]] = {}
    for start in range(0, len(subjects), batch_size):
        chunk = list(subjects[start : start + batch_size])
        emb = model.embed([s.inputs for s in chunk], batch_size=batch_size)
        batch = {m: _padded(emb[m], model.device) for m in model.modalities}
        with torch.no_grad(), model._autocast():
            _, attention = model.network(batch, return_attention=True)
        for b, subject in enumerate(chunk):
            n_query = len(emb[query][b])
            for layer, per_key in enumerate(attention):
                for key in keys:
                    n_keys = len(emb[key][b])
                    if key == "rna":
                        regions = subject.rna_regions
                        if not any(r[0] == "cds" for r in regions):
                            continue
                        seq = subject.rna
                    else:
                        regions = [("cds", 0, len(subject.protein or ""))]
                        seq = subject.protein or ""
                    if n_keys == 0:
                        continue
                    weights = per_key[key][b].float().cpu().numpy()  # (H, Lq, Lk)
                    rows = weights[:, : max(n_query, 1), :n_keys].mean(axis=1)  # (H, n_keys)
                    names = [r[0] for r in regions]
                    fractions = slot_regions(model, key, seq, regions, n_keys)
                    per_region = rows @ fractions  # (H, R)
                    full = np.zeros((per_region.shape[0], len(RNA_REGIONS)))
                    for k, name in enumerate(names):
                        full[:, RNA_REGIONS.index(name)] += per_region[:, k]
                    collected.setdefault((layer, key), []).append(full)
                    region_names.setdefault(key, [])
                    for name in names:
                        if name not in region_names[key]:
                            region_names[key].append(name)
    rows_out = []
    for (layer, key), values in sorted(collected.items()):
        stack = np.stack(values)  # (n, H, R)
        for head in range(stack.shape[1]):
            for name in sorted(region_names[key], key=RNA_REGIONS.index):
                k = RNA_REGIONS.index(name)
                rows_out.append(
                    (
                        layer,
                        key,
                        head,
                        name,
                        float(stack[:, head, k].mean()),
                        float(stack[:, head, k].std()),
                        len(values),
                    )
                )
    return pd.DataFrame(rows_out, columns=["layer", "key", "head", "region", "share", "sd", "n"])


# ---------------------------------------------------------------------------- figures


def _letter(ax, letter: str, x: float, y: float, height: float, color: str) -> None:
    """``letter`` filling the box [x, x+1] × [y, y+height] (height may be negative)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import PathPatch
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    path = TextPath(
        (0, 0), letter, size=1, prop=FontProperties(family="DejaVu Sans", weight="bold")
    )
    box = path.get_extents()
    scale_x = 0.9 / box.width
    scale_y = abs(height) / box.height
    transform = (
        Affine2D()
        .translate(-box.x0, -box.y0)
        .scale(scale_x, scale_y)
        .translate(x + 0.05, y if height >= 0 else y + height)
    )
    ax.add_patch(PathPatch(transform.transform_path(path), facecolor=color, edgecolor="none"))


# an ISM track none of whose substitutions changes what the model reads (no effect, NaN)
NOT_READ_NOTE = "no substitution here changes what the model reads: no effect to draw"


def plot_ism(
    summary: pd.DataFrame,
    subject: Subject,
    tissues: Sequence[str] = ("mean",),
    title: str | None = None,
):
    """Logo-style tracks of ``summary`` (:func:`summarize`), one per tissue in ``tissues``
    (``mean``: over all tissues): the reference letter at each position scaled by its
    ``score`` (up when the reference base raises the prediction), coloured bars past
    ``LETTERS_UP_TO`` positions, nothing where ``score`` is NaN (no alt the model sees);
    the subject's parts as coloured bands underneath."""
    from isoflow.report.figures import FONT_SIZE, WIDTH_IN, _figure, _style

    fig = _figure(WIDTH_IN, 1.0 + 1.7 * len(tissues))
    axes = fig.subplots(len(tissues) + 1, 1, sharex=True, height_ratios=[3] * len(tissues) + [1])
    positions = summary["position"].unique()
    lo, hi = int(positions.min()), int(positions.max()) + 1
    letters = hi - lo <= LETTERS_UP_TO
    for ax, tissue in zip(axes[:-1], tissues, strict=True):
        rows = summary[summary["tissue"] == tissue]
        if rows.empty:
            raise ValueError(f"no summary rows for tissue {tissue!r}")
        # a position the model cannot see (score NaN: no alt has an effect) draws nothing
        drawn = np.isfinite(rows["score"].to_numpy(dtype=float))
        scores = rows["score"].to_numpy(dtype=float)[drawn]
        bases = rows["ref"].to_numpy()[drawn]
        xs = rows["position"].to_numpy()[drawn]
        if letters:
            for x, base, s in zip(xs, bases, scores, strict=True):
                if s != 0:
                    _letter(ax, base, float(x), 0.0, float(s), BASE_COLORS.get(base, "#718096"))
        elif len(xs):
            colors = [BASE_COLORS.get(b, "#718096") for b in bases]
            ax.bar(xs + 0.5, scores, width=1.0, color=colors, linewidth=0)
        top = float(np.abs(scores).max()) if len(scores) else 0.0
        top = top or 1.0
        ax.set_ylim(-1.1 * top, 1.1 * top)
        ax.axhline(0, color="#4a5568", linewidth=0.6)
        if not drawn.any():  # an empty track would read as "no effect": say why it is empty
            ax.text(
                0.5,
                0.5,
                NOT_READ_NOTE,
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=FONT_SIZE,
                color="#c53030",
            )
        ax.set_ylabel(f"{tissue}\nref − mean", fontsize=FONT_SIZE, parse_math=False)
        _style(ax)
    band_ax = axes[-1]
    for name, a, b in subject.bands:
        a, b = max(a, lo), min(b, hi)
        if a >= b:
            continue
        band_ax.axvspan(a, b, color=PART_COLORS.get(name, "#e2e8f0"))
        band_ax.text(
            (a + b) / 2, 0.5, name, ha="center", va="center", fontsize=FONT_SIZE - 1, clip_on=True
        )
    band_ax.set_xlim(lo, hi)
    band_ax.set_yticks([])
    band_ax.set_xlabel(
        "cassette offset (0-based)"
        if subject.kind == "construct"
        else "DNA window index (TSS at window // 2)"
    )
    _style(band_ax)
    # parse_math=False: a `$` pair in an id or tissue is text, not mathtext (a ValueError)
    fig.suptitle(
        title or f"ISM of {subject.id}: ISM × reference, mean-centred per position",
        parse_math=False,
    )
    return fig


def plot_attention(shares: pd.DataFrame, title: str | None = None):
    """Stacked bars: one per layer × key × head, its attention split over regions."""
    from isoflow.report.figures import FONT_SIZE, WIDTH_IN, _figure, _style

    fig = _figure(WIDTH_IN, 4.2)
    ax = fig.subplots()
    groups = shares.groupby(["layer", "key", "head"], sort=True)
    labels, bottoms = [], None
    regions = [r for r in RNA_REGIONS if r in set(shares["region"])]
    table = {r: [] for r in regions}
    for (layer, key, head), rows in groups:
        labels.append(f"L{layer} {key}\nh{head}")
        by_region = dict(zip(rows["region"], rows["share"], strict=True))
        for r in regions:
            table[r].append(by_region.get(r, 0.0))
    xs = np.arange(len(labels))
    bottoms = np.zeros(len(labels))
    for r in regions:
        ax.bar(xs, table[r], bottom=bottoms, color=PART_COLORS.get(r), label=r, width=0.8)
        bottoms += np.asarray(table[r])
    ax.set_xticks(xs, labels, fontsize=FONT_SIZE - 2)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of attention")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=FONT_SIZE - 1, frameon=False)
    _style(ax)
    n = int(shares["n"].max()) if len(shares) else 0
    fig.suptitle(title or f"Cross-attention by region (mean over {n} transcripts)")
    return fig


# ---------------------------------------------------------------------------- running


def _is_demo(model: Model) -> bool:
    return "demo" in str(model.card.get("data") or "").lower()


# What ``isoflow explain`` may write under its prefix: each table in these formats, each
# figure as PNG (``run`` checks every such path before any work).
TABLE_SUFFIXES = {"ism": ("tsv", "parquet"), "ism_summary": ("tsv",), "attention": ("tsv",)}
FIGURES = ("ism", "attention")


def track_file_name(track: str) -> str:
    """A logo track (``mean`` or a tissue) as its bedGraph's name under the prefix:
    ``ism.<track>.bedGraph``, a run of characters other than letters, digits, ``_``, ``-``
    as one ``_`` (``Adipose Tissue`` → ``ism.Adipose_Tissue.bedGraph``)."""
    return f"ism.{re.sub(r'[^A-Za-z0-9_-]+', '_', track)}.bedGraph"


def output_paths(prefix: str | Path, tracks: Sequence[str] = ()) -> list[Path]:
    """Every file ``write_outputs`` may write under ``prefix``; ``tracks``: the logo tracks
    whose bedGraph it may write (a transcript's)."""
    prefix = Path(prefix)
    names = [f"{n}.{s}" for n, suffixes in TABLE_SUFFIXES.items() for s in suffixes]
    names += [f"{n}.png" for n in FIGURES]
    names += [track_file_name(t) for t in dict.fromkeys(tracks)]
    return [prefix.parent / f"{prefix.name}.{name}" for name in names]


def bedgraph(
    summary: pd.DataFrame, subject_id: str, track: str, units: str = "log(1 + TPM)"
) -> str:
    """A transcript's ISM logo track as a UCSC bedGraph (genome.ucsc.edu/goldenPath/help/
    bedgraph.html): a ``track type=bedGraph`` line, then ``chrom start end score`` per
    position of ``summary`` (:func:`summarize`) in ``track``, 0-based half-open
    (``genomic_pos`` − 1, ``genomic_pos``), sorted by genome coordinate (on a minus-strand
    transcript the window index runs against the genome), chrom as the genome FASTA names
    it; ``score`` as ``ism_summary.tsv`` writes it (``%.6g``). A position without a score
    (no alt seen) is left out: bedGraph has no NaN. ``units``: the model's
    (:func:`isoflow.bundle.output_units`), named in the track's description."""
    rows = summary[(summary["tissue"] == track) & summary["score"].notna()]
    if rows["genomic_pos"].isna().any():
        raise ValueError("a bedGraph needs genome positions: a transcript's summary")
    rows = rows.sort_values("genomic_pos", kind="stable")
    end = rows["genomic_pos"].astype("int64")

    def quoted(text: str) -> str:  # a double quote would end the track line's value
        return '"' + text.replace('"', "'") + '"'

    description = (
        f"isoflow explain ISM of {subject_id}, {track}: ref - mean prediction over the bases"
        f", {units}; positions with no alt seen left out"
    )
    lines = [f"track type=bedGraph name={quoted(f'{subject_id} ISM {track}')}"]
    lines[0] += f" description={quoted(description)}"
    lines += [
        f"{chrom}\t{e - 1}\t{e}\t{score:.6g}"
        for chrom, e, score in zip(rows["chrom"], end, rows["score"], strict=True)
    ]
    return "\n".join(lines) + "\n"


def write_outputs(
    prefix: str | Path,
    frames: dict[str, pd.DataFrame],
    figures: dict,
    tracks: dict[str, str] | None = None,
    possible_tracks: Sequence[str] = (),
) -> list[Path]:
    """``{prefix}.{name}`` for each table (in its ``TABLE_SUFFIXES``), figure (``.png``,
    one of ``FIGURES``) and bedGraph (``tracks``: track → its text, :func:`bedgraph`), all
    or none (:func:`isoflow.files.output_set`); then the other files of
    :func:`output_paths` (an earlier run's; ``possible_tracks``: the tracks whose bedGraph
    an earlier run may have written) are removed. Returns the paths."""
    from isoflow.files import atomic_path, output_set
    from isoflow.report.figures import save_figure

    prefix = Path(prefix)
    unknown = (set(frames) - set(TABLE_SUFFIXES)) | (set(figures) - set(FIGURES))
    if unknown:  # a new output must be listed, so run checks its path first
        raise ValueError(f"outputs not in TABLE_SUFFIXES / FIGURES: {sorted(unknown)}")
    tables = {(n, s): f"{prefix.name}.{n}.{s}" for n in frames for s in TABLE_SUFFIXES[n]}
    images = {(n, "png"): f"{prefix.name}.{n}.png" for n in figures}
    tracks = tracks or {}
    graphs = {(t, "bedGraph"): f"{prefix.name}.{track_file_name(t)}" for t in tracks}
    named = {**tables, **images, **graphs}
    written = {key: prefix.parent / name for key, name in named.items()}
    possible = output_paths(prefix, [*possible_tracks, *tracks])
    with output_set(written, possible=possible, what="explain") as tmp:
        for (name, suffix), path in tmp.items():
            if suffix == "bedGraph":
                with atomic_path(path) as part:
                    Path(part).write_text(tracks[name])
                continue
            if suffix == "png":
                fig, demo = figures[name]
                save_figure(fig, path, demo=demo)
                continue
            with atomic_path(path) as part:
                if suffix == "tsv":
                    frames[name].to_csv(part, sep="\t", index=False, float_format="%.6g")
                else:
                    frames[name].to_parquet(part, index=False)
    return list(written.values())


def explain(
    model: Model,
    *,
    subject: Subject | None = None,
    region: str | None = None,
    attention_subjects: Sequence[Subject] | None = None,
    out: str | Path,
    tissues: Sequence[str] = ("mean",),
    batch_size: int | None = None,
) -> list[Path]:
    """ISM of ``region`` of ``subject`` and/or attention by region over
    ``attention_subjects``; writes ``{out}.ism.{parquet,tsv}``, ``{out}.ism_summary.tsv``,
    ``{out}.ism.png``, for a transcript ``{out}.ism.<track>.bedGraph`` per track of
    ``tissues`` (:func:`bedgraph`), ``{out}.attention.{tsv,png}``. Returns the paths
    written."""
    from isoflow.bundle import output_units
    from isoflow.progress import Progress

    unknown = [t for t in tissues if t != "mean" and t not in model.tissues]
    if unknown:  # named as the setting (isoflow explain: --tissue), not as a record
        tracks = ["mean", *model.tissues]
        hint = did_you_mean(unknown[0], tracks, cutoff=0.5)
        raise InputError(
            None,
            "explain.tissues",
            f"{unknown[0]!r} is not a tissue of this model{hint}; tracks: {', '.join(tracks)}",
        )
    names = {track_file_name(t) for t in tissues}
    if subject is not None and subject.kind == "transcript" and len(names) < len(set(tissues)):
        raise InputError(None, None, f"tracks {list(tissues)} would share a bedGraph file name")
    frames: dict[str, pd.DataFrame] = {}
    figures: dict[str, Any] = {}
    tracks: dict[str, str] = {}
    demo = _is_demo(model)
    if attention_subjects is not None:  # before the ISM, which may run for minutes
        check_attention_bundle(model.path, model.card)
    if subject is not None:
        sites = region_sites(subject, region)
        meter = Progress("substitutions", 3 * len(sites), "substitutions", logger=log)
        done = [0]

        def progress(n: int, _total: int) -> None:
            meter.update(n - done[0])
            done[0] = n

        started = time.perf_counter()
        effects = ism(model, subject, sites, batch_size=batch_size, progress=progress)
        meter.finish()
        log.info(
            "ISM of %s: %d substitutions in %.1f s",
            subject.id,
            len(effects),
            time.perf_counter() - started,
        )
        frames["ism"] = effects
        frames["ism_summary"] = summarize(effects, model.tissues)
        figures["ism"] = (plot_ism(frames["ism_summary"], subject, tissues), demo)
        if subject.kind == "transcript":  # a construct has no genome to place it on
            units = output_units(model.card)
            tracks = {t: bedgraph(frames["ism_summary"], subject.id, t, units) for t in tissues}
    if attention_subjects is not None:
        shares = attention_by_region(model, attention_subjects, batch_size=batch_size)
        if shares.empty:
            raise InputError(None, None, "no transcript with a CDS to map attention onto")
        frames["attention"] = shares
        figures["attention"] = (plot_attention(shares), demo)
    if not frames:
        raise InputError(None, None, NOTHING_TO_EXPLAIN)
    # an earlier run's bedGraph of any track goes when this one writes none or others
    possible = ["mean", *model.tissues]
    return write_outputs(out, frames, figures, tracks=tracks, possible_tracks=possible)


# ---------------------------------------------------------------------------- the command


NOTHING_TO_EXPLAIN = (
    "nothing to explain: give --id ID (a construct of --constructs) or --transcript ID (of "
    "--dataset) for mutation effects, --attention for attention by region, or both"
)

# config keys in messages, shown as this command's flags (isoflow.commands)
FLAGS = {
    "polya_in_rna": "--polya-in-rna",
    "polya_tail": "--polya-tail",
    "fill": "--fill",
    "explain.tissues": "--tissue",
    # a non-canonical CDS: only isoflow score reads one as it is (explain has no such flag)
    "allow_noncanonical_cds": "isoflow score --allow-noncanonical-cds; isoflow explain reads "
    "a canonical CDS only",
}


def add_arguments(parser) -> None:
    parser.add_argument(
        *MODEL_FLAGS,
        required=True,
        metavar="BUNDLE",
        help="model bundle folder (results/models/RUN)",
    )
    what = parser.add_argument_group("what to mutate (one of)")
    what.add_argument(
        *CONSTRUCTS_FLAGS,
        "--construct",  # the spelling explain took before --constructs: kept working
        metavar="FILE",
        help="construct file (TSV, GenBank, or a folder of GenBank: its files named .gb, "
        ".gbk, .genbank or starting with LOCUS; any other file skipped with a warning)",
    )
    what.add_argument("--id", help="the construct to mutate (an id in --constructs)")
    what.add_argument("--transcript", help="a transcript ID of --dataset to mutate")
    parser.add_argument(
        "--region",
        help="part name (promoter, utr5, cds, utr3, ...; for a transcript also upstream, "
        "intron, downstream) or START-END, 0-based half-open: cassette offsets of a "
        "construct, DNA-window indices of a transcript (TSS at window // 2). Default: a "
        "construct's whole cassette",
    )
    parser.add_argument("--dataset", help="dataset parquet (results/dataset/NAME.parquet)")
    parser.add_argument(
        *ANNOTATION_FLAGS,
        default="results/annotation/transcripts.parquet",
        help="transcripts table, for a transcript's exons and CDS (default: %(default)s)",
    )
    parser.add_argument(*GENOME_FLAGS, help="genome FASTA (default: the one the dataset names)")
    parser.add_argument(
        "--attention",
        action="store_true",
        help="also attention by region: over the dataset's test split with --dataset, "
        "else over every construct of --constructs",
    )
    parser.add_argument(
        "--attention-transcripts",
        type=positive_int,
        default=64,
        help="test-split coding transcripts averaged (dataset order; default %(default)s)",
    )
    parser.add_argument(
        "--tissue", action="append", help="tissue track(s) of the logo (default: mean)"
    )
    parser.add_argument(
        *OUT_FLAGS,
        required=True,
        metavar="PREFIX",
        help="output prefix (not a file): PREFIX.ism.tsv, ..." + REPLACED,
    )
    add_placement_arguments(parser)  # a construct placed as isoflow score places it
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help=BATCH_SIZE_HELP)
    parser.add_argument("--device", help=DEVICE_HELP)


def explain_job(
    model_path: str | Path,
    out: str | Path,
    *,
    construct: str | Path | None = None,
    construct_id: str | None = None,
    transcript: str | None = None,
    dataset: str | Path | None = None,
    annotation: str | Path = "results/annotation/transcripts.parquet",
    genome: str | None = None,
    region: str | None = None,
    attention: bool = False,
    attention_transcripts: int = 64,
    tissues: Sequence[str] | None = None,
    fill: str = "N",
    background: str | Path | None = None,
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    batch_size: int | None = None,
    device: str | None = None,
) -> list[Path]:
    """What ``isoflow explain`` and rule ``explain`` run: load the bundle, build the subject
    (construct ``construct_id`` of ``construct``, or ``transcript`` of ``dataset``) and the
    attention set (``attention_transcripts`` coding test-split transcripts of ``dataset``
    when given and > 0, else every construct of ``construct``), then :func:`explain`."""
    from isoflow.bundle import load_model
    from isoflow.constructs import read_background, read_constructs

    if not (construct_id or transcript or attention):  # before the model loads
        raise InputError(None, None, NOTHING_TO_EXPLAIN)
    if transcript and construct_id:
        raise InputError(None, None, "give --constructs/--id or --transcript, not both")
    if construct_id and not construct:
        raise InputError(None, None, "--id names a construct of --constructs FILE")
    if transcript and not dataset:
        raise InputError(None, None, "--transcript needs --dataset")
    over_dataset = bool(dataset) and attention_transcripts > 0
    if attention and not (over_dataset or construct):
        raise InputError(None, None, "--attention needs --dataset (its test split) or --constructs")
    from isoflow.bundle import read_manifest
    from isoflow.constructs import check_placement

    manifest = read_manifest(model_path)
    if attention:
        check_attention_bundle(model_path, manifest)
    if transcript or (attention and over_dataset):  # a fine-tuned bundle never saw these
        from isoflow.bundle import warn_genomic_inputs

        use = "isoflow explain --transcript" if transcript else "isoflow explain --attention"
        warn_genomic_inputs(model_path, manifest, f"{use} (over --dataset)")
    window = int(manifest["dna"]["window"])
    background_seq = read_background(background) if background else None
    if construct:  # the placement checked before the model loads (score's one line)
        from isoflow.score import check_finetuned_placement

        check_placement(
            window,
            fill=fill,
            background=background_seq,
            polya_tail=polya_tail,
            background_path=background,
        )
        # a fine-tuned bundle explains constructs only as its constructs were placed
        check_finetuned_placement(
            [model_path],
            [manifest],
            fill=fill,
            background=background_seq,
            polya_in_rna=polya_in_rna,
            polya_tail=polya_tail,
            background_path=background,
            action="explain",
        )
    # the constructs and the id checked before the model loads: an unknown id was reported
    # only once the model had loaded
    constructs = read_constructs(construct) if construct else []
    chosen = [c for c in constructs if c.id == construct_id]
    if construct_id and not chosen:
        known = ", ".join(c.id for c in constructs)
        raise InputError(construct, construct_id, f"no such construct ({known})")
    model = load_model(model_path, device=device)
    options = {
        "window": model.dna_window,
        "fill": fill,
        "background": background_seq,
        "polya_in_rna": polya_in_rna,
        "polya_tail": polya_tail,
    }
    subject = None
    if construct_id:
        subject = construct_subject(chosen[0], **options)
    elif transcript:
        (subject,) = read_transcripts(dataset, annotation, [transcript], genome_fasta=genome)
    attention_subjects = None
    if attention:
        if over_dataset:
            attention_subjects = read_transcripts(
                dataset,
                annotation,
                split="test",
                coding_only=True,
                limit=attention_transcripts,
                genome_fasta=genome,
            )
        else:
            attention_subjects = [construct_subject(c, **options) for c in constructs]
    return explain(
        model,
        subject=subject,
        region=region,
        attention_subjects=attention_subjects,
        out=out,
        tissues=tissues or ("mean",),
        batch_size=batch_size,
    )


def run(args) -> int:
    from isoflow.files import check_output_files, check_prefix

    check_prefix(args.out)
    # before any work: every file write_outputs may write under the prefix
    inputs = [args.model, args.constructs, args.dataset, args.annotation]
    inputs += [args.genome, args.background]
    tracks = (args.tissue or ["mean"]) if args.transcript else []
    check_output_files(output_paths(args.out, tracks), inputs=inputs)
    written = explain_job(
        args.model,
        args.out,
        construct=args.constructs,
        construct_id=args.id,
        transcript=args.transcript,
        dataset=args.dataset,
        annotation=args.annotation,
        genome=args.genome,
        region=args.region,
        attention=args.attention,
        attention_transcripts=args.attention_transcripts,
        tissues=args.tissue,
        fill=args.fill,
        background=args.background,
        polya_in_rna=args.polya_in_rna,
        polya_tail=args.polya_tail,
        batch_size=args.batch_size,
        device=args.device,
    )
    for path in written:
        print(path)
    return 0
