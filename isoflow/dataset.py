"""The join the model reads: annotation x sequences x DNA windows x targets x splits.

One row per transcript in annotation ∩ targets ∩ splits; see DESIGN.md
(``results/dataset/{name}.parquet``) for the columns.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from isoflow.annotation import PAR_Y_SUFFIX
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path
from isoflow.gtex import TISSUES_METADATA_KEY, read_targets
from isoflow.progress import Progress
from isoflow.sequences import read_dropped_windows, read_fasta
from isoflow.splits import SPLITS, check_transcript_table, read_splits

log = logging.getLogger(__name__)

GENOME_METADATA_KEY = b"isoflow.genome"
ANNOTATION_COLUMNS = [
    "transcript_id",
    "gene_id",
    "gene_name",
    "transcript_type",
    "chrom",
    "strand",
    "tss",
]
COLUMNS = [*ANNOTATION_COLUMNS, "window_start", "window_end", "rna_seq", "protein_seq", "split"]

PathLike = str | os.PathLike


WINDOWS_FIX = "rebuild the windows (rule sequences)"


def read_windows_bed(path: PathLike) -> pd.DataFrame:
    """BED6 of DNA windows -> transcript_id, chrom, strand, window_start, window_end.

    A bad row is named by its transcript ID (the ``# dropped`` comment lines of
    ``dna.edge: drop`` come first, so a row's position is not its file line)."""
    names = ["chrom", "window_start", "window_end", "transcript_id", "score", "strand"]
    read = dict(sep="\t", header=None, names=names, comment="#")
    try:
        bed = pd.read_csv(path, dtype={"chrom": str, "transcript_id": str, "strand": str}, **read)
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(path, None, f"not a BED6 of windows: {str(err).splitlines()[0]}") from None
    for column in ("window_start", "window_end"):
        if not pd.api.types.is_integer_dtype(bed[column]):
            text = pd.read_csv(path, dtype=str, keep_default_na=False, **read)[column]
            bad = ~text.str.fullmatch(r"[+-]?\d+").to_numpy()
            i = int(bad.nonzero()[0][0]) if bad.any() else 0
            raise InputError(
                path,
                bed["transcript_id"].iat[i],
                f"{column} {text.iat[i]!r} is not an integer; {WINDOWS_FIX}",
            )
    bad = (bed["window_end"] <= bed["window_start"]).to_numpy()
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise InputError(
            path,
            bed["transcript_id"].iat[i],
            f"window end {bed['window_end'].iat[i]} <= start {bed['window_start'].iat[i]}; "
            f"{WINDOWS_FIX}",
        )
    dup = bed["transcript_id"].duplicated()
    if dup.any():
        raise InputError(
            path,
            bed["transcript_id"][dup].iloc[0],
            f"transcript has two windows; {WINDOWS_FIX}",
        )
    return bed.drop(columns="score")


def _first_difference(left: pd.Series, right: pd.Series) -> int | None:
    """Position of the first row where two aligned columns differ (by position, not label)."""
    differs = left.to_numpy() != right.to_numpy()
    return int(differs.nonzero()[0][0]) if differs.any() else None


def _check_finite(df: pd.DataFrame, tissues: list[str], path: PathLike) -> None:
    """Targets are finite: a NaN or inf would reach the loss and the metrics."""
    values = df[tissues].to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            path,
            df["transcript_id"].iat[row],
            f"target of tissue {tissues[col]} is {values[row, col]}, not a finite number",
        )


def build_dataset(
    transcripts_parquet: PathLike,
    rna_fa_gz: PathLike,
    protein_fa_gz: PathLike,
    windows_bed: PathLike,
    targets_parquet: PathLike,
    splits_tsv: PathLike,
    genome_fasta: PathLike,
    out: PathLike,
) -> pd.DataFrame:
    """Join the inputs into ``out`` (parquet) and return the table written.

    Every kept transcript must have an RNA sequence and a window whose chrom/strand agree with
    the annotation; a missing protein is a masked modality (null).
    """
    annotation = pd.read_parquet(transcripts_parquet, columns=ANNOTATION_COLUMNS)
    check_transcript_table(annotation, ANNOTATION_COLUMNS, transcripts_parquet)
    targets, tissues = read_targets(targets_parquet)
    check_transcript_table(targets, ["transcript_id"], targets_parquet)
    splits = read_splits(splits_tsv)

    # A merge on a duplicated key would repeat rows without a word: every input is checked
    # for unique transcript IDs first (read_splits checks its own).
    df = annotation.merge(
        splits[["transcript_id", "gene_id", "split"]].rename(columns={"gene_id": "split_gene"}),
        on="transcript_id",
        how="inner",
    )
    i = _first_difference(df["split_gene"], df["gene_id"])
    if i is not None:
        raise InputError(
            splits_tsv,
            df["transcript_id"].iat[i],
            f"gene {df['split_gene'].iat[i]} here, {df['gene_id'].iat[i]} in "
            f"{transcripts_parquet}: the splits were made from another annotation; rebuild them",
        )
    df = df.drop(columns="split_gene")
    df = df.merge(targets.drop(columns="gene_id"), on="transcript_id", how="inner")
    log.info(
        "annotation %d, targets %d, splits %d -> %d transcripts in all three; %s copies "
        "(chrY PAR): %d in the targets, %d in the dataset (annotation.par_y)",
        len(annotation),
        len(targets),
        len(splits),
        len(df),
        PAR_Y_SUFFIX,
        int(targets["transcript_id"].str.endswith(PAR_Y_SUFFIX).sum()),
        int(df["transcript_id"].str.endswith(PAR_Y_SUFFIX).sum()),
    )
    if df.empty:
        raise InputError(
            targets_parquet,
            None,
            f"no transcript is in the annotation ({transcripts_parquet}), the targets and the "
            "splits together; do the IDs agree, versions included?",
        )

    _check_finite(df, tissues, targets_parquet)

    windows = read_windows_bed(windows_bed).set_index("transcript_id")
    dropped = df["transcript_id"].isin(read_dropped_windows(windows_bed)).to_numpy()
    if dropped.any():
        log.warning(
            "%d transcripts (%d genes) left out: their DNA window runs past a contig end "
            "(dna.edge: drop; '# dropped' lines of %s), e.g. %s",
            int(dropped.sum()),
            df.loc[dropped, "gene_id"].nunique(),
            windows_bed,
            ", ".join(df.loc[dropped, "transcript_id"].head(5)),
        )
        df = df.loc[~dropped].reset_index(drop=True)
        if df.empty:
            raise InputError(
                windows_bed,
                None,
                "every transcript's DNA window runs past a contig end (dna.edge: drop): a "
                "dna.window longer than the contigs? set dna.edge: pad or a shorter window",
            )
    missing = df.loc[~df["transcript_id"].isin(windows.index), "transcript_id"]
    if len(missing):
        raise InputError(windows_bed, missing.iloc[0], f"no DNA window ({len(missing)} missing)")
    windows = windows.loc[df["transcript_id"]]
    for column in ("chrom", "strand"):
        i = _first_difference(windows[column], df[column])
        if i is not None:
            raise InputError(
                windows_bed,
                df["transcript_id"].iat[i],
                f"window {column} {windows[column].iat[i]} differs from the annotation's "
                f"{df[column].iat[i]} ({transcripts_parquet}): the windows were made from "
                f"another annotation; {WINDOWS_FIX}",
            )
    df["window_start"] = windows["window_start"].to_numpy()
    df["window_end"] = windows["window_end"].to_numpy()

    # One RNA record per annotation transcript (sequences), one protein per coding one.
    rna = read_fasta(rna_fa_gz, Progress("dataset: RNA", len(annotation), "records", logger=log))
    missing = df.loc[~df["transcript_id"].isin(rna.keys()), "transcript_id"]
    if len(missing):
        raise InputError(rna_fa_gz, missing.iloc[0], f"no RNA sequence ({len(missing)} missing)")
    df["rna_seq"] = df["transcript_id"].map(rna)
    del rna
    empty = (df["rna_seq"].str.len() == 0).to_numpy()
    if empty.any():
        tid = df["transcript_id"].iat[int(empty.nonzero()[0][0])]
        raise InputError(rna_fa_gz, tid, "empty RNA sequence")
    protein = read_fasta(protein_fa_gz, Progress("dataset: protein", None, "records", logger=log))
    df["protein_seq"] = df["transcript_id"].map(protein)  # NaN -> null: masked modality
    del protein

    df = df[[*COLUMNS, *tissues]]
    for split in SPLITS:
        part = df[df["split"] == split]
        log.info("%s: %d genes, %d transcripts", split, part["gene_id"].nunique(), len(part))
    write_dataset(df, tissues, genome_fasta, out)
    return df


def dataset_schema(tissues: list[str], genome_fasta: PathLike) -> pa.Schema:
    fields = [
        pa.field(name, pa.string(), nullable=False)
        for name in ["transcript_id", "gene_id", "gene_name", "transcript_type", "chrom", "strand"]
    ]
    fields += [
        pa.field(name, pa.int64(), nullable=False) for name in ["tss", "window_start", "window_end"]
    ]
    # large_string: 199k GENCODE transcripts are ~350 Mb of RNA, near int32 offsets' 2 GiB.
    fields += [
        pa.field("rna_seq", pa.large_string(), nullable=False),
        pa.field("protein_seq", pa.large_string(), nullable=True),
        pa.field("split", pa.string(), nullable=False),
    ]
    fields += [pa.field(t, pa.float32(), nullable=False) for t in tissues]
    metadata = {
        TISSUES_METADATA_KEY: json.dumps(tissues).encode(),
        GENOME_METADATA_KEY: str(genome_fasta).encode(),
    }
    return pa.schema(fields, metadata=metadata)


def write_dataset(df: pd.DataFrame, tissues: list[str], genome_fasta: PathLike, out: PathLike):
    schema = dataset_schema(tissues, genome_fasta)
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def read_dataset(path: PathLike) -> tuple[pd.DataFrame, list[str]]:
    """dataset parquet -> (DataFrame, tissues in order); ``df.attrs['genome']`` = FASTA path."""
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if TISSUES_METADATA_KEY not in meta:
        raise InputError(path, None, "no isoflow.tissues schema metadata (not a dataset table)")
    tissues = json.loads(meta[TISSUES_METADATA_KEY])
    df = table.to_pandas()
    # Plain Python None for a missing protein, whatever pandas' string dtype uses.
    df["protein_seq"] = df["protein_seq"].astype(object).where(df["protein_seq"].notna(), None)
    df.attrs["genome"] = meta.get(GENOME_METADATA_KEY, b"").decode() or None
    return df, tissues
