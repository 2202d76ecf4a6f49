"""Train / valid / test splits of transcripts, deterministic from IDs (a hash, never row order).

``gene`` scheme (as IsoFormer): every isoform of a gene lands on the same side. The side comes
from sha256(salt, gene key) mapped to [0, 1): below ``test_fraction`` -> test, below
``test_fraction + valid_fraction`` -> valid, else train. The gene key is the gene ID without
its version (and without GENCODE's ``_PAR_Y`` suffix), so that the chrX and chrY copies of a
pseudoautosomal gene (``ENSG00000182378.13`` and ``ENSG00000182378.13_PAR_Y``) and a gene whose
version changed between releases stay on one side: grouping is stricter than with versions.
Fractions are fractions of genes, not of transcripts.

``chrom`` scheme: transcripts on ``valid_chroms`` -> valid, on ``test_chroms`` -> test, the rest
train (genes never span chromosomes in GENCODE: PAR copies have their own IDs).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from isoflow.alphabet import id_unit
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path

SPLITS = ("train", "valid", "test")
SCHEMES = ("gene", "chrom")


def gene_key(gene_id: str) -> str:
    """``ENSG00000182378.13_PAR_Y`` -> ``ENSG00000182378``; unversioned IDs unchanged."""
    key = gene_id.split(".", 1)[0]
    return key.removesuffix("_PAR_Y")


def gene_unit(gene_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by (salt, gene key): the gene's position in the split."""
    return id_unit(f"{salt}\t{gene_key(gene_id)}")


def check_transcript_table(
    table: pd.DataFrame, required: list[str], source: str | os.PathLike | None
) -> None:
    """The ``required`` columns hold no null or empty value; transcript IDs are unique.

    The one check of every transcript table read by ID (annotation, targets, splits input):
    a null gene_id crashed the hash, a duplicated ID made a merge repeat rows.
    """
    for column in required:
        values = table[column]
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if empty.any():
            i = int(empty.to_numpy().nonzero()[0][0])
            tid = table["transcript_id"].iat[i]
            usable = column != "transcript_id" and isinstance(tid, str) and tid.strip()
            record = tid if usable else f"row {i + 1}"
            raise InputError(source, record, f"{column} is null or empty")
    dup = table["transcript_id"].duplicated()
    if dup.any():
        raise InputError(source, table["transcript_id"][dup].iloc[0], "transcript listed twice")


def split_transcripts(
    transcripts: pd.DataFrame,
    scheme: str = "gene",
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: str = "isoflow",
    valid_chroms: list[str] | None = None,
    test_chroms: list[str] | None = None,
    source: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """transcript_id, gene_id (+ chrom for ``chrom``) -> transcript_id, gene_id, split.

    Rows come back sorted by transcript_id, so the result does not depend on input order.
    ``source`` names the input file in error messages.
    """
    needed = ["transcript_id", "gene_id"] + (["chrom"] if scheme == "chrom" else [])
    missing = [c for c in needed if c not in transcripts.columns]
    if missing:
        raise InputError(source, None, f"missing column(s) {', '.join(missing)}")
    check_transcript_table(transcripts, needed, source)
    out = transcripts[needed].sort_values("transcript_id", kind="stable").reset_index(drop=True)

    if scheme == "gene":
        if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction <= 1):
            raise ValueError(
                f"split fractions must be >= 0 and sum to <= 1: valid {valid_fraction}, "
                f"test {test_fraction}"
            )
        units = {g: gene_unit(g, salt) for g in out["gene_id"].unique()}
        u = out["gene_id"].map(units).to_numpy()
        split = np.where(
            u < test_fraction,
            "test",
            np.where(u < test_fraction + valid_fraction, "valid", "train"),
        )
    elif scheme == "chrom":
        valid_chroms, test_chroms = list(valid_chroms or []), list(test_chroms or [])
        both = sorted(set(valid_chroms) & set(test_chroms))
        if both:
            raise ValueError(
                f"chromosome(s) {', '.join(both)} in both valid_chroms and test_chroms"
            )
        present = set(out["chrom"])
        for chrom in valid_chroms + test_chroms:
            if chrom not in present:
                contigs = ", ".join(sorted(present)[:10])
                raise InputError(
                    source, chrom, f"held-out chromosome has no transcript (contigs: {contigs} ...)"
                )
        split = np.where(
            out["chrom"].isin(test_chroms),
            "test",
            np.where(out["chrom"].isin(valid_chroms), "valid", "train"),
        )
        # A gene ID on two contigs (an alias mix-up, a non-GENCODE PAR copy) would put its
        # isoforms on both sides of the split.
        sides = pd.Series(split).groupby(out["gene_id"].to_numpy()).nunique()
        if (sides > 1).any():
            gene = sides.index[(sides > 1).to_numpy()][0]
            contigs = sorted(out.loc[out["gene_id"] == gene, "chrom"].unique())
            raise InputError(
                source,
                gene,
                f"gene on contigs {', '.join(contigs)} falls on two sides of the chrom split",
            )
    else:
        raise ValueError(f"unknown split scheme {scheme!r}; one of {', '.join(SCHEMES)}")
    return pd.DataFrame(
        {"transcript_id": out["transcript_id"], "gene_id": out["gene_id"], "split": split}
    )


def write_splits(splits: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``transcript_id  gene_id  split`` with a header line, atomically."""
    with atomic_path(path) as tmp:
        splits[["transcript_id", "gene_id", "split"]].to_csv(tmp, sep="\t", index=False)


def read_splits(path: str | os.PathLike) -> pd.DataFrame:
    """Read a splits TSV, checking the header, split names and unique transcript IDs."""
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise InputError(path, None, f"not a splits TSV: {str(err).splitlines()[0]}") from None
    if list(df.columns) != ["transcript_id", "gene_id", "split"]:
        raise InputError(
            path,
            1,
            f"expected header transcript_id, gene_id, split; got {', '.join(df.columns)}: "
            "rebuild it (rule splits)",
        )
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(path, i + 2, f"split {df['split'].iat[i]!r} is not train/valid/test")
    dup = df["transcript_id"].duplicated().to_numpy()
    if dup.any():
        i = int(dup.nonzero()[0][0])
        raise InputError(path, i + 2, f"transcript {df['transcript_id'].iat[i]} listed twice")
    return df


def build_splits(transcripts: str | os.PathLike, out: str | os.PathLike, scheme: str, **params):
    """The `splits` rule: annotation transcripts.parquet -> splits/{scheme}.tsv."""
    columns = ["transcript_id", "gene_id", "chrom"]
    df = pd.read_parquet(transcripts, columns=columns)
    splits = split_transcripts(df, scheme, source=transcripts, **params)
    write_splits(splits, out)
    return splits
