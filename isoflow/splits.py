"""Train / valid / test splits of transcripts, deterministic from IDs (a hash, never row order).

``gene`` scheme (as IsoFormer): every isoform of a gene lands on the same side. The side comes
from sha256(salt, gene key) mapped to [0, 1): below ``test_fraction`` -> test, below
``test_fraction + valid_fraction`` -> valid, else train. The gene key is the gene ID without
its version (and without GENCODE's ``_PAR_Y`` suffix), so that the chrX and chrY copies of a
pseudoautosomal gene (``ENSG00000182378.13`` and ``ENSG00000182378.13_PAR_Y``) and a gene whose
version changed between releases stay on one side: grouping is stricter than with versions.
Fractions are fractions of genes, not of transcripts.

``locus`` scheme: as ``gene``, but over units of genes that share sequence
(:func:`locus_units`): genes are joined when a TSS of one lies within
``locus_tss_distance`` bp of a TSS of the other on the same contig, on either strand (0: the
same position; the default 1,000 also joins bidirectional promoters), or when their exons
overlap on the same contig and strand (a readthrough gene such as INO80B-WBP1 and its
parents), transitively (union-find). A unit's side is sha256(salt, its smallest gene key), so
a gene alone in its unit falls where the ``gene`` scheme puts it. Fractions are fractions of
units.

``chrom`` scheme: transcripts on ``valid_chroms`` -> valid, on ``test_chroms`` -> test, the rest
train (genes never span chromosomes in GENCODE: PAR copies have their own IDs).

Whatever the scheme, :func:`tss_leaks` counts the valid and test transcripts whose TSS is a
training transcript's of another gene, or lies within ``NEAR_TSS_BP`` of one: the leak a
gene split leaves (the same DNA window, or nearly).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from isoflow.alphabet import id_unit
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path

SPLITS = ("train", "valid", "test")
SCHEMES = ("gene", "locus", "chrom")
# The annotation columns the locus scheme reads, and those the TSS diagnostics read.
LOCUS_COLUMNS = ["chrom", "strand", "tss", "exon_starts", "exon_ends"]
TSS_COLUMNS = ["chrom", "strand", "tss"]
# The diagnostics' "nearby" TSS: two TSSs this close hold nearly the same DNA window (the
# 16,384 bp config.yaml's positional DNA cache keeps share >= 93.9 % of it) and a pair of
# genes on opposite strands this close is a bidirectional promoter (TSSs < 1 kb apart).
NEAR_TSS_BP = 1000
# split.locus_tss_distance's default (config/schema.yaml holds the same; a test checks).
LOCUS_TSS_DISTANCE = 1000

log = logging.getLogger(__name__)


def gene_key(gene_id: str) -> str:
    """``ENSG00000182378.13_PAR_Y`` -> ``ENSG00000182378``; unversioned IDs unchanged."""
    key = gene_id.split(".", 1)[0]
    return key.removesuffix("_PAR_Y")


def gene_unit(gene_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by (salt, gene key): the gene's position in the split."""
    return id_unit(f"{salt}\t{gene_key(gene_id)}")


def gene_keys(gene_ids: pd.Series) -> np.ndarray:
    """:func:`gene_key` of each ID (vectorised)."""
    keys = gene_ids.astype(str).str.split(".", n=1).str[0].str.removesuffix("_PAR_Y")
    return keys.to_numpy(dtype=object)


def _offset_positions(groups: np.ndarray, positions: np.ndarray, gap: int) -> np.ndarray:
    """``positions`` made one sortable int64 axis with ``groups`` (contig, or contig and
    strand, codes): each group's positions shifted past the previous group's by more than
    ``gap``, so nothing within ``gap`` bp crosses from one group to the next."""
    positions = np.asarray(positions, dtype=np.int64)
    low = int(positions.min()) if len(positions) else 0
    span = (int(positions.max()) - low if len(positions) else 0) + 2 * int(gap) + 2
    return np.asarray(groups, dtype=np.int64) * span + (positions - low)


def locus_units(transcripts: pd.DataFrame, tss_distance: int = LOCUS_TSS_DISTANCE) -> pd.Series:
    """Gene key -> the key of its unit (the smallest gene key in it).

    ``transcripts``: gene_id, chrom, strand, tss and exon_starts / exon_ends (lists,
    0-based half-open, as ``transcripts.parquet``). Two genes are one unit when a TSS of one
    lies within ``tss_distance`` bp of a TSS of the other on the same contig, on either
    strand (the same position on opposite strands reads the same bases, reverse
    complemented; a head-to-head pair is a bidirectional promoter), or when an exon of one
    overlaps an exon of the other on the same contig and strand; and transitively. A gene
    key (GENCODE's ``_PAR_Y`` copy with its chrX gene) is one node whatever its contigs.
    Linear in exons after a sort: sorted TSSs within ``tss_distance`` of their neighbour,
    and sorted exons overlapping the running end of the ones before, form chains; genes
    meeting in a chain are joined by ``scipy.sparse.csgraph.connected_components``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if tss_distance < 0:
        raise ValueError(f"locus_tss_distance must be >= 0, got {tss_distance}")
    gene_code, genes = pd.factorize(gene_keys(transcripts["gene_id"]))
    n_genes = len(genes)
    contig = pd.factorize(transcripts["chrom"].astype(str))[0]

    # TSS chains: per contig, each TSS within tss_distance of the previous one (sorted).
    tss = _offset_positions(contig, transcripts["tss"].to_numpy(), tss_distance)
    order = np.argsort(tss, kind="stable")
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.diff(tss[order]) > tss_distance
    tss_chain = np.empty(len(order), dtype=np.int64)
    tss_chain[order] = np.cumsum(new) - 1
    n_tss_chains = int(new.sum())

    # Exon chains: per contig and strand, exons sorted by start, a new chain where an exon
    # starts at or after the end of every exon before it (half-open: touching is apart).
    starts_per_tx = transcripts["exon_starts"].to_numpy()
    counts = np.fromiter((len(e) for e in starts_per_tx), dtype=np.int64, count=len(starts_per_tx))
    exon_tx = np.repeat(np.arange(len(transcripts)), counts)
    if counts.sum():
        starts = np.concatenate(starts_per_tx).astype(np.int64)
        ends = np.concatenate(transcripts["exon_ends"].to_numpy()).astype(np.int64)
    else:
        starts = ends = np.zeros(0, dtype=np.int64)
    if len(ends) != len(starts):
        raise ValueError("exon_starts and exon_ends differ in length")
    minus = (transcripts["strand"].to_numpy() == "-").astype(np.int64)
    group = (contig * 2 + minus)[exon_tx]
    both = _offset_positions(np.repeat(group, 2), np.column_stack([starts, ends]).ravel(), 0)
    start_off, end_off = both[0::2], both[1::2]
    order = np.lexsort((end_off, start_off))
    running_end = np.maximum.accumulate(end_off[order])
    new = np.ones(len(order), dtype=bool)
    new[1:] = start_off[order][1:] >= running_end[:-1]
    exon_chain = np.empty(len(order), dtype=np.int64)
    exon_chain[order] = np.cumsum(new) - 1
    n_exon_chains = int(new.sum())

    # Genes and chains as one graph: a gene is joined to every chain one of its TSSs or
    # exons is in; a unit is a connected component.
    rows = np.concatenate([gene_code, gene_code[exon_tx]])
    cols = np.concatenate([n_genes + tss_chain, n_genes + n_tss_chains + exon_chain])
    size = n_genes + n_tss_chains + n_exon_chains
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    gene_label = labels[:n_genes]
    smallest = pd.Series(np.asarray(genes, dtype=object)).groupby(gene_label).transform("min")
    return pd.Series(smallest.to_numpy(), index=pd.Index(genes, name="gene_key"), name="unit")


def unit_line(units: pd.Series, tss_distance: int) -> str:
    """One log line on :func:`locus_units`' result: genes, units, the joined ones, the
    largest (its first five gene keys)."""
    sizes = units.value_counts()
    joined = sizes[sizes > 1]
    line = (
        f"locus units: {len(units):,} genes in {len(sizes):,} units (locus_tss_distance "
        f"{tss_distance:,} bp); "
    )
    if not len(joined):
        return line + "no two genes share a unit"
    largest = sorted(units.index[units == joined.index[0]])
    names = ", ".join(largest[:5]) + (", ..." if len(largest) > 5 else "")
    return line + (
        f"{len(joined):,} units of 2+ genes hold {int(joined.sum()):,} genes; the largest "
        f"holds {len(largest):,} ({names})"
    )


def _near_other_gene(
    ref_group: np.ndarray,
    ref_pos: np.ndarray,
    ref_gene: np.ndarray,
    query_group: np.ndarray,
    query_pos: np.ndarray,
    query_gene: np.ndarray,
    distance: int,
) -> np.ndarray:
    """Per query: does a reference of another gene (codes) lie in the same group (codes) within
    ``distance`` bp? Sorted references, two binary searches per query, and for each reference
    the end of the run of references of its gene: a window holds only the query's gene when
    it starts with that gene and the run reaches past its end."""
    if not len(ref_pos) or not len(query_pos):
        return np.zeros(len(query_pos), dtype=bool)
    groups = np.concatenate([ref_group, query_group])
    positions = np.concatenate([ref_pos, query_pos])
    axis = _offset_positions(groups, positions, distance)
    ref_axis, query_axis = axis[: len(ref_pos)], axis[len(ref_pos) :]
    order = np.argsort(ref_axis, kind="stable")
    ref_axis, ref_gene = ref_axis[order], np.asarray(ref_gene)[order]
    lo = np.searchsorted(ref_axis, query_axis - distance, side="left")
    hi = np.searchsorted(ref_axis, query_axis + distance, side="right")
    change = np.flatnonzero(ref_gene[1:] != ref_gene[:-1]) + 1
    run_end = np.repeat(
        np.append(change, len(ref_gene)), np.diff(np.concatenate([[0], change, [len(ref_gene)]]))
    )
    first = np.minimum(lo, len(ref_gene) - 1)
    only_own = (ref_gene[first] == query_gene) & (run_end[first] >= hi)
    return (hi > lo) & ~only_own


def tss_leaks(
    transcripts: pd.DataFrame,
    splits: pd.DataFrame,
    distance: int = NEAR_TSS_BP,
    source: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Per held-out split (valid, test): its transcripts, how many have a TSS (contig, strand,
    position) equal to a train transcript's of another gene (``same_tss``), and how many a
    train transcript's TSS of another gene within ``distance`` bp on either strand
    (``near_tss``, the same ones included). Genes compared by :func:`gene_key`.

    ``transcripts``: transcript_id, gene_id, chrom, strand, tss; ``splits``: transcript_id,
    split. A transcript of the splits missing from ``transcripts`` (``source`` names that
    file) is an error."""
    table = splits[["transcript_id", "split"]].merge(
        transcripts[["transcript_id", "gene_id", *TSS_COLUMNS]],
        on="transcript_id",
        how="left",
        validate="one_to_one",
    )
    lost = table["tss"].isna()
    if lost.any():
        raise InputError(
            source,
            table["transcript_id"][lost].iloc[0],
            "transcript of the splits not in this annotation: rebuild the splits (rule splits)",
        )
    gene = pd.factorize(gene_keys(table["gene_id"]))[0]
    contig = pd.factorize(table["chrom"].astype(str))[0]
    stranded = contig * 2 + (table["strand"].to_numpy() == "-")
    tss = table["tss"].to_numpy(dtype=np.int64)
    train = (table["split"] == "train").to_numpy()
    rows = []
    for name in ("valid", "test"):
        held = (table["split"] == name).to_numpy()
        same = _near_other_gene(
            stranded[train], tss[train], gene[train], stranded[held], tss[held], gene[held], 0
        )
        near = _near_other_gene(
            contig[train], tss[train], gene[train], contig[held], tss[held], gene[held], distance
        )
        rows.append(
            {
                "split": name,
                "transcripts": int(held.sum()),
                "same_tss": int(same.sum()),
                "near_tss": int(near.sum()),
            }
        )
    return pd.DataFrame(rows)


def leak_share(count: int, total: int) -> str:
    """``count`` of ``total`` as a percentage with two decimals (``-`` when ``total`` is 0)."""
    return f"{count / total:.2%}" if total else "-"


def leak_lines(leaks: pd.DataFrame, distance: int = NEAR_TSS_BP) -> list[str]:
    """:func:`tss_leaks` as log lines, one per held-out split."""
    lines = []
    for row in leaks.itertuples(index=False):
        same = f"{row.same_tss:,} ({leak_share(row.same_tss, row.transcripts)})"
        near = f"{row.near_tss:,} ({leak_share(row.near_tss, row.transcripts)})"
        lines.append(
            f"{row.split}: {row.transcripts:,} transcripts; {same} share their TSS (contig, "
            f"strand, position) with a train transcript of another gene; {near} have a train "
            f"TSS of another gene within {distance:,} bp on either strand"
        )
    return lines


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
    locus_tss_distance: int = LOCUS_TSS_DISTANCE,
) -> pd.DataFrame:
    """transcript_id, gene_id (+ chrom for ``chrom``, + ``LOCUS_COLUMNS`` for ``locus``) ->
    transcript_id, gene_id, split.

    Rows come back sorted by transcript_id, so the result does not depend on input order.
    ``source`` names the input file in error messages.
    """
    extra = {"chrom": ["chrom"], "locus": LOCUS_COLUMNS}.get(scheme, [])
    needed = ["transcript_id", "gene_id"] + extra
    missing = [c for c in needed if c not in transcripts.columns]
    if missing:
        raise InputError(source, None, f"missing column(s) {', '.join(missing)}")
    lists = [c for c in needed if c in ("exon_starts", "exon_ends")]
    check_transcript_table(transcripts, [c for c in needed if c not in lists], source)
    for column in lists:
        empty = transcripts[column].isna()
        if empty.any():
            tid = transcripts["transcript_id"][empty].iloc[0]
            raise InputError(source, tid, f"{column} is null or empty")
    out = transcripts[needed].sort_values("transcript_id", kind="stable").reset_index(drop=True)

    if scheme in ("gene", "locus"):
        if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction <= 1):
            raise ValueError(
                f"split fractions must be >= 0 and sum to <= 1: valid {valid_fraction}, "
                f"test {test_fraction}"
            )
        keys = pd.Series(gene_keys(out["gene_id"]))
        if scheme == "locus":
            units = locus_units(out, locus_tss_distance)
            keys = keys.map(units)
            log.info("%s", unit_line(units, locus_tss_distance))
        position = {k: id_unit(f"{salt}\t{k}") for k in keys.unique()}
        u = keys.map(position).to_numpy(dtype=float)
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
    """The `splits` rule: annotation transcripts.parquet -> splits/{scheme}.tsv; the log gets
    the per-split counts and the TSS leak counts of :func:`tss_leaks`."""
    columns = ["transcript_id", "gene_id", *TSS_COLUMNS]
    if scheme == "locus":
        columns += ["exon_starts", "exon_ends"]
    df = pd.read_parquet(transcripts, columns=columns)
    splits = split_transcripts(df, scheme, source=transcripts, **params)
    write_splits(splits, out)
    counts = splits.groupby("split")["gene_id"].agg(["size", "nunique"])
    for name in SPLITS:
        n, genes = counts.loc[name] if name in counts.index else (0, 0)
        log.info("%s: %s transcripts of %s genes", name, f"{n:,}", f"{genes:,}")
    for line in leak_lines(tss_leaks(df, splits)):
        log.info("%s", line)
    return splits
