"""Sequence primitives, each written once: the DNA alphabet and its token codes, complement,
the NCBI codon tables and CDS translation, the mitochondrial contig names, truncation to a
length budget, the missing-sequence test and the ID hash (a stable number in [0, 1) per ID).

Light on purpose (numpy only): the demo generator, the sequences rule, the encoders, the
embedding cache, the splits and the loader all read from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from itertools import product

import numpy as np

# DNA tokens as :mod:`isoflow.genome` makes them: A=0, C=1, G=2, T=3, anything else N=4.
DNA_LETTERS = "ACGTN"
DNA_LETTER_CODES = np.frombuffer(DNA_LETTERS.encode("ascii"), dtype=np.uint8)

# The mitochondrion under its UCSC, Ensembl and other common names (order: UCSC first).
MITO_NAMES = ("chrM", "MT", "M", "chrMT")
MITO_CONTIGS = frozenset(MITO_NAMES)
# rCRS, the GRCh38 mitochondrion, under its RefSeq accession (e.g. "gi|...|ref|NC_012920.1|").
_MITO_ACCESSION = "NC_012920"

# NCBI translation tables, codons in TCAG order.
_STANDARD = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_VERTEBRATE_MITO = "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIMMTTTTNNKKSS**VVVVAAAADDEEGGGG"
_TABLES = {1: _STANDARD, 2: _VERTEBRATE_MITO}
_MITO_INITIATORS = frozenset({"ATG", "ATT", "ATC", "ATA", "GTG"})

_IUPAC, _IUPAC_COMPLEMENT = "ACGTURYKMSWBDHVNacgturykmswbdhvn", "TGCAAYRMKSWVHDBNtgcaayrmkswvhdbn"
_COMPLEMENT = str.maketrans(_IUPAC, _IUPAC_COMPLEMENT)
_COMPLEMENT_BYTES = bytes.maketrans(_IUPAC.encode(), _IUPAC_COMPLEMENT.encode())


def _codon_lookup(table: str) -> np.ndarray:
    """125-entry table over base-5 codon codes (A,C,G,T,N); any N -> X."""
    out = np.full(125, ord("X"), dtype=np.uint8)
    order = "TCAG"
    for (a, b, c), aa in zip(product(order, repeat=3), table, strict=True):
        tok = ["ACGT".index(x) for x in (a, b, c)]
        out[tok[0] * 25 + tok[1] * 5 + tok[2]] = ord(aa)
    return out


_LOOKUPS = {number: _codon_lookup(table) for number, table in _TABLES.items()}
_TOKENS = np.full(256, 4, dtype=np.uint8)
for _i, _base in enumerate("ACGT"):
    _TOKENS[ord(_base)] = _TOKENS[ord(_base.lower())] = _i


def is_mitochondrial(chrom: str) -> bool:
    """True for the mitochondrial contig under its UCSC, Ensembl or RefSeq name."""
    return chrom in MITO_CONTIGS or _MITO_ACCESSION in chrom


def genetic_code(chrom: str) -> int:
    """NCBI translation table for a contig: 2 on the mitochondrion, else 1."""
    return 2 if is_mitochondrial(chrom) else 1


def reverse_complement(seq: str | bytes) -> str | bytes:
    """Reverse complement (IUPAC codes, case kept) of a ``str`` or ``bytes`` sequence."""
    if isinstance(seq, bytes | bytearray):
        return bytes(seq).translate(_COMPLEMENT_BYTES)[::-1]
    return seq.translate(_COMPLEMENT)[::-1]


def translate_cds(
    cds: str,
    *,
    table: int = 1,
    phase: int = 0,
    start_complete: bool = True,
    selenocysteines: Iterable[int] = (),
    keep_stop: bool = False,
) -> str:
    """Protein of a CDS (5'->3', stop codon included or not).

    ``phase``: bases before the first complete codon (GTF frame / GFF3 phase of the 5'-most
    CDS segment); when > 0 they are skipped and the protein starts with ``X``.
    ``start_complete``: the first codon is the annotated start (table 2 reads it as ``M``).
    ``selenocysteines``: 0-based positions in ``cds`` of the first base of codons read as
    ``U``; a position not on a codon boundary raises ValueError.
    ``keep_stop``: keep a terminal ``*`` (the demo generator tests codons for stops).
    """
    if table not in _LOOKUPS:
        raise ValueError(f"unsupported translation table {table}")
    if not 0 <= phase <= 2:
        raise ValueError(f"phase must be 0, 1 or 2, not {phase}")
    body = cds[phase:]
    n_codons = len(body) // 3
    tokens = _TOKENS[np.frombuffer(body[: 3 * n_codons].encode("ascii"), dtype=np.uint8)]
    codes = tokens.reshape(-1, 3).astype(np.int64) @ np.array([25, 5, 1])
    aa = _LOOKUPS[table][codes]
    if table == 2 and start_complete and phase == 0 and n_codons:
        if body[:3].upper() in _MITO_INITIATORS:
            aa[0] = ord("M")
    for position in selenocysteines:
        codon, offset = divmod(position - phase, 3)
        if offset or not 0 <= codon < n_codons:
            raise ValueError(f"selenocysteine at CDS position {position} is not a codon start")
        aa[codon] = ord("U")
    protein = aa.tobytes().decode("ascii")
    tail = body[3 * n_codons :].upper()
    if protein.endswith("*") and not keep_stop:
        protein = protein[:-1]
    elif protein.endswith("*") and tail:
        protein += "X"
    elif tail and not (table == 2 and tail in ("T", "TA")):
        protein += "X"
    return ("X" if phase else "") + protein


def standard_code() -> dict[str, str]:
    """The standard genetic code (NCBI table 1) as codon -> amino acid (``*`` = stop)."""
    return {"".join(c): aa for c, aa in zip(product("TCAG", repeat=3), _STANDARD, strict=True)}


TRUNCATE_MODES = ("keep_5prime", "keep_3prime")


def truncate(seq: str, max_len: int | None, mode: str = "keep_5prime") -> str:
    """``seq`` cut to ``max_len`` letters, keeping its 5' (start) or 3' (end) part."""
    if mode not in TRUNCATE_MODES:
        raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {mode!r}")
    if max_len is None or len(seq) <= max_len:
        return seq
    return seq[:max_len] if mode == "keep_5prime" else seq[len(seq) - max_len :]


def is_missing(seq: object) -> bool:
    """True for an absent sequence: ``None``, NaN (pandas' missing value) or ``""``."""
    if seq is None:
        return True
    if isinstance(seq, float):
        return bool(np.isnan(seq))
    return len(seq) == 0  # type: ignore[arg-type]


def id_unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: the first 8 bytes of its sha256, big-endian, over
    2**64. Stable across runs, machines, Python versions and row orders (``hash()`` is not);
    the one ID hash of the package (the gene split, the training-fraction subset)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def id_fraction(ids: Sequence[str]) -> np.ndarray:
    """:func:`id_unit` of each ID (as text): which rows a training-fraction subset keeps."""
    return np.array([id_unit(str(i)) for i in ids])
