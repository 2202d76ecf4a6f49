"""isoflow.dataset: the join of annotation, sequences, windows, targets and splits."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from isoflow.dataset import build_dataset, read_dataset, read_windows_bed
from isoflow.errors import InputError
from isoflow.gtex import read_targets, write_targets
from isoflow.splits import write_splits

TISSUES = ["Liver", "Brain"]


def fasta(path, records, width=60):
    text = "".join(
        f">{name}\n" + "".join(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
        for name, seq in records.items()
    )
    path.write_bytes(gzip.compress(text.encode()))
    return path


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    ann = pd.DataFrame(
        {
            "transcript_id": [f"ENST{i:011d}.1" for i in range(6)],
            "gene_id": ["ENSG1.1", "ENSG1.1", "ENSG2.3", "ENSG3.1", "ENSG3.1", "ENSG4.2"],
            "gene_name": ["A", "A", "B", "C", "C", "D"],
            "transcript_type": ["protein_coding"] * 4 + ["lncRNA", "protein_coding"],
            "chrom": ["chr1", "chr1", "chr1", "chr2", "chr2", "chrM"],
            "strand": ["+", "+", "-", "-", "-", "+"],
            "tx_start": [10, 50, 300, 5, 90, 0],
            "tx_end": [400, 700, 900, 200, 300, 60],
        }
    )
    ann["tss"] = np.where(ann["strand"] == "+", ann["tx_start"], ann["tx_end"] - 1)
    pq.write_table(pa.Table.from_pandas(ann, preserve_index=False), tmp_path / "tx.parquet")
    rna = {
        t: "".join(rng.choice(list("ACGT"), 90 + 17 * i)) for i, t in enumerate(ann.transcript_id)
    }
    fasta(tmp_path / "rna.fa.gz", rna)
    protein = {t: "M" + "A" * (5 + i) for i, t in enumerate(ann.transcript_id) if i != 4}
    fasta(tmp_path / "protein.fa.gz", protein)
    with open(tmp_path / "windows.bed", "w") as bed:
        for row in ann.itertuples():
            fields = [row.chrom, row.tss - 64, row.tss + 64, row.transcript_id, 0, row.strand]
            bed.write("\t".join(map(str, fields)) + "\n")
    # Targets: transcript 5 (chrM) missing, one GTEx-only transcript extra.
    ids = [*ann.transcript_id[:5], "ENST99999999999.1"]
    targets = pd.DataFrame({"transcript_id": ids, "gene_id": ["g"] * 6})
    for t in TISSUES:
        targets[t] = rng.random(6).astype(np.float32)
    stats = pd.DataFrame({"tissue": TISSUES, "n_samples": [3, 4], "mean": [0, 0], "sd": [1, 1]})
    write_targets(targets, stats, TISSUES, tmp_path / "targets.parquet", tmp_path / "stats.tsv")
    # Splits: transcript 0 missing.
    splits = pd.DataFrame(
        {
            "transcript_id": ann.transcript_id[1:],
            "gene_id": ann.gene_id[1:],
            "split": ["train", "valid", "test", "test", "train"],
        }
    )
    write_splits(splits, tmp_path / "splits.tsv")
    paths = {
        "transcripts_parquet": tmp_path / "tx.parquet",
        "rna_fa_gz": tmp_path / "rna.fa.gz",
        "protein_fa_gz": tmp_path / "protein.fa.gz",
        "windows_bed": tmp_path / "windows.bed",
        "targets_parquet": tmp_path / "targets.parquet",
        "splits_tsv": tmp_path / "splits.tsv",
        "genome_fasta": "resources/genome/GRCh38.fa",
        "out": tmp_path / "dataset" / "demo.parquet",
    }
    return paths, ann, rna, protein, targets


def test_build_and_read(inputs):
    paths, ann, rna, protein, targets = inputs
    build_dataset(**paths)
    table = pq.read_table(paths["out"])
    assert table.schema.names == [
        "transcript_id",
        "gene_id",
        "gene_name",
        "transcript_type",
        "chrom",
        "strand",
        "tss",
        "window_start",
        "window_end",
        "rna_seq",
        "protein_seq",
        "split",
        *TISSUES,
    ]
    assert table.schema.field("Liver").type == pa.float32()
    assert table.schema.field("tss").type == pa.int64()
    meta = table.schema.metadata
    assert json.loads(meta[b"isoflow.tissues"]) == TISSUES
    assert meta[b"isoflow.genome"] == b"resources/genome/GRCh38.fa"

    df, tissues = read_dataset(paths["out"])
    assert tissues == TISSUES
    assert df.attrs["genome"] == "resources/genome/GRCh38.fa"
    # annotation ∩ targets ∩ splits: 1..4 (0 has no split, 5 no target, the GTEx-only one
    # no annotation), in annotation order.
    assert df["transcript_id"].tolist() == list(ann.transcript_id[1:5])
    for row in df.itertuples():
        assert row.rna_seq == rna[row.transcript_id]
        assert row.window_end - row.window_start == 128
        assert row.window_start == ann.set_index("transcript_id").tss[row.transcript_id] - 64
    assert df["protein_seq"].tolist()[:3] == [protein[t] for t in ann.transcript_id[1:4]]
    assert df["protein_seq"].iat[3] is None  # lncRNA: masked modality
    assert df["split"].tolist() == ["train", "valid", "test", "test"]
    expected = targets.set_index("transcript_id").loc[df["transcript_id"], TISSUES]
    np.testing.assert_array_equal(df[TISSUES].to_numpy(), expected.to_numpy())


def test_missing_rna_is_an_error(inputs):
    paths, ann, rna, _, _ = inputs
    del rna[ann.transcript_id[2]]
    fasta(paths["rna_fa_gz"], rna)
    with pytest.raises(InputError, match=rf"^{paths['rna_fa_gz']}:{ann.transcript_id[2]}: no RNA"):
        build_dataset(**paths)
    assert not paths["out"].exists()


def test_duplicate_fasta_record(inputs):
    paths, ann, rna, protein, _ = inputs
    text = gzip.decompress(paths["protein_fa_gz"].read_bytes()).decode()
    paths["protein_fa_gz"].write_bytes(
        gzip.compress((text + f">{ann.transcript_id[1]}\nMK\n").encode())
    )
    with pytest.raises(InputError, match=rf":{ann.transcript_id[1]}: sequence listed twice$"):
        build_dataset(**paths)


def test_window_strand_disagrees(inputs):
    paths, ann, *_ = inputs
    lines = paths["windows_bed"].read_text().splitlines()
    lines[3] = lines[3][:-1] + "+"  # transcript 3 is on '-'
    paths["windows_bed"].write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"window strand \+ differs from the annotation's -"):
        build_dataset(**paths)


def test_window_chrom_disagrees(inputs):
    # transcript 3 is on chr2; a window on chr1 would read another contig's DNA for it
    paths, ann, *_ = inputs
    lines = paths["windows_bed"].read_text().splitlines()
    lines[3] = lines[3].replace("chr2", "chr1", 1)
    paths["windows_bed"].write_text("\n".join(lines) + "\n")
    bad(
        paths,
        rf"windows.bed:{ann.transcript_id[3]}: window chrom chr1 differs from the "
        r"annotation's chr2 \(.*tx.parquet\): the windows were made from another annotation; "
        r"rebuild the windows \(rule sequences\)$",
    )


W = "ENST00000000001.1"  # the second window of each BED below


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("chr1\t100\t100\tW\t0\t+", "window end 100 <= start 100"),  # empty
        ("chr1\t101\t100\tW\t0\t+", "window end 100 <= start 101"),
        ("chr1\t100\t228\tENST00000000000.1\t0\t+", "transcript has two windows"),
        ("chr1\t100.5\t228\tW\t0\t+", "window_start '100.5' is not an integer"),
        ("chr1\t100\t\tW\t0\t+", "window_end '' is not an integer"),
        ("chr1\t1e2\t228\tW\t0\t+", "window_start '1e2' is not an integer"),
    ],
    ids=["end-is-start", "end-before-start", "two-windows", "float", "empty", "exponent"],
)
def test_a_bad_window_row_is_one_line_naming_its_transcript(tmp_path, second, message):
    # after a '# dropped' line (dna.edge: drop), as rule sequences writes them: the error names
    # the row's transcript, not its position among the rows
    bed = tmp_path / "windows.bed"
    first = "chr1\t0\t128\tENST00000000000.1\t0\t+"
    dropped = "# dropped\tchr1\t-64\t64\tENST00000000009.1\t0\t+"
    bed.write_text("\n".join([dropped, first, second.replace("\tW\t", f"\t{W}\t")]) + "\n")
    record = "ENST00000000000.1" if "two windows" in message else W
    with pytest.raises(InputError) as err:
        read_windows_bed(bed)
    assert str(err.value) == f"{bed}:{record}: {message}; rebuild the windows (rule sequences)"


def test_missing_window(inputs):
    paths, ann, *_ = inputs
    lines = paths["windows_bed"].read_text().splitlines()
    paths["windows_bed"].write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    with pytest.raises(InputError, match=rf":{ann.transcript_id[2]}: no DNA window \(1 missing\)"):
        build_dataset(**paths)


def test_unversioned_targets_do_not_join(inputs, tmp_path):
    paths, ann, *_ = inputs
    targets = pq.read_table(paths["targets_parquet"])
    ids = [t.split(".")[0] for t in targets.column("transcript_id").to_pylist()]
    targets = targets.set_column(0, "transcript_id", pa.array(ids))
    pq.write_table(targets, paths["targets_parquet"])
    with pytest.raises(InputError, match="versions included"):
        build_dataset(**paths)
    assert not paths["out"].exists()


# ---- issue 7: joins that used to repeat rows or carry nulls / NaN into the model --------


def bad(paths, pattern):
    with pytest.raises(InputError, match=pattern) as err:
        build_dataset(**paths)
    assert "\n" not in str(err.value)
    assert not paths["out"].exists()


def rewrite_annotation(paths, ann):
    pq.write_table(pa.Table.from_pandas(ann, preserve_index=False), paths["transcripts_parquet"])


def test_annotation_transcript_listed_twice(inputs):
    # Before: the merge repeated the transcript's row (two training examples, one target).
    paths, ann, *_ = inputs
    rewrite_annotation(paths, pd.concat([ann, ann.iloc[[2]]], ignore_index=True))
    bad(paths, rf"^{paths['transcripts_parquet']}:{ann.transcript_id[2]}: transcript listed twice$")


def test_targets_transcript_listed_twice(inputs):
    paths, ann, *_ = inputs
    targets, _ = read_targets(paths["targets_parquet"])
    targets = pd.concat([targets, targets.iloc[[1]]], ignore_index=True)
    stats = pd.DataFrame({"tissue": TISSUES, "n_samples": [3, 4], "mean": [0, 0], "sd": [1, 1]})
    write_targets(targets, stats, TISSUES, paths["targets_parquet"], paths["out"].parent / "s")
    bad(paths, rf"^{paths['targets_parquet']}:{ann.transcript_id[1]}: transcript listed twice$")


def test_splits_transcript_listed_twice(inputs):
    paths, ann, *_ = inputs
    lines = paths["splits_tsv"].read_text().splitlines()
    paths["splits_tsv"].write_text("\n".join([*lines, lines[2]]) + "\n")
    bad(paths, rf"^{paths['splits_tsv']}:{len(lines) + 1}: transcript .* listed twice$")


def test_splits_from_another_annotation(inputs):
    # Before: a transcript's split came from a gene grouping that is not this annotation's.
    paths, ann, *_ = inputs
    text = paths["splits_tsv"].read_text().replace("\tENSG2.3\t", "\tENSG9.1\t")
    paths["splits_tsv"].write_text(text)
    bad(paths, rf":{ann.transcript_id[2]}: gene ENSG9.1 here, ENSG2.3 in .*rebuild them$")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_target(inputs, value):
    # Before: NaN was written as the target and reached the loss.
    paths, ann, *_ = inputs
    targets, _ = read_targets(paths["targets_parquet"])
    targets.loc[3, "Brain"] = value
    stats = pd.DataFrame({"tissue": TISSUES, "n_samples": [3, 4], "mean": [0, 0], "sd": [1, 1]})
    write_targets(targets, stats, TISSUES, paths["targets_parquet"], paths["out"].parent / "s")
    bad(paths, rf":{ann.transcript_id[3]}: target of tissue Brain is (nan|inf), not a finite")


@pytest.mark.parametrize("column", ["gene_name", "transcript_type", "gene_id"])
def test_null_annotation_field(inputs, column):
    # Before: a null gene_name/transcript_type was written into a non-nullable column.
    paths, ann, *_ = inputs
    ann = ann.copy()
    ann[column] = ann[column].astype(object)
    ann.loc[2, column] = None
    rewrite_annotation(paths, ann)
    bad(paths, rf":{ann.transcript_id[2]}: {column} is null or empty$")


def test_empty_rna(inputs):
    paths, ann, rna, *_ = inputs
    rna[ann.transcript_id[1]] = ""
    fasta(paths["rna_fa_gz"], rna)
    bad(paths, rf":{ann.transcript_id[1]}: empty RNA sequence$")


def test_targets_metadata_names_an_absent_tissue(inputs):
    paths, *_ = inputs
    table = pq.read_table(paths["targets_parquet"])
    meta = {b"isoflow.tissues": json.dumps([*TISSUES, "Lung"]).encode()}
    pq.write_table(table.replace_schema_metadata(meta), paths["targets_parquet"])
    bad(paths, r"column 'Lung' named in isoflow.tissues is absent$")


def test_targets_without_tissue_metadata(inputs):
    paths, *_ = inputs
    table = pq.read_table(paths["targets_parquet"])
    pq.write_table(table.replace_schema_metadata({}), paths["targets_parquet"])
    bad(paths, r"no isoflow.tissues schema metadata \(not a targets table\)$")


def insert_byte(data: bytes, line: int, after: bytes) -> bytes:
    """``data`` with byte 0xe9 after the first ``after`` of (1-based) ``line``."""
    lines = data.split(b"\n")
    lines[line - 1] = lines[line - 1].replace(after, after + b"\xe9", 1)
    return b"\n".join(lines)


def test_non_utf8_byte_in_the_windows_bed_names_line_and_column(inputs):
    # Before: "not a BED6 of windows: 'utf-8' codec can't decode byte 0xe9 in position ..."
    # with no line.
    paths, *_ = inputs
    bed = paths["windows_bed"]
    bed.write_bytes(insert_byte(bed.read_bytes(), 4, b"ENST"))
    with pytest.raises(InputError) as err:
        build_dataset(**paths)
    assert str(err.value).startswith(f"{bed}:4: byte 0xe9 at column ")
    assert str(err.value).endswith(
        "is not UTF-8; re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


@pytest.mark.parametrize("where", ["header", "sequence"])
def test_non_utf8_byte_in_the_rna_fasta_names_line_and_column(inputs, where):
    # Before: a UnicodeDecodeError traceback from pysam.
    paths, *_ = inputs
    rna = paths["rna_fa_gz"]
    line = 4 if where == "header" else 5  # the second record: its header, its first bases
    text = gzip.decompress(rna.read_bytes())
    assert text.split(b"\n")[3].startswith(b">ENST")
    rna.write_bytes(gzip.compress(insert_byte(text, line, text.split(b"\n")[line - 1][:3])))
    with pytest.raises(InputError, match=rf"^{rna}:{line}: byte 0xe9 at column 4 is not UTF-8"):
        build_dataset(**paths)


# --- chrY pseudoautosomal copies never reach the dataset by default ------------------------


def _par_chain(tmp_path, chry, par_y, window=128, edge="pad"):
    """GENCODE-style GTF with a chrX PAR transcript and its ``_PAR_Y`` copy, a genome whose
    chrY PAR is N-masked (GENCODE FASTA) or a copy of chrX's (UCSC hg38), a GTEx-layout GCT
    holding both (the copy all zero, as GTEx v8): annotation -> sequences -> targets ->
    splits -> dataset through the rules' library calls."""
    from isoflow.annotation import read_annotation, write_transcripts
    from isoflow.gtex import build_targets
    from isoflow.sequences import build_sequences
    from isoflow.splits import build_splits

    tmp_path.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    chrx = "".join(rng.choice(list("ACGT"), 3000))
    par = chrx[:1000] if chry == "unmasked" else "N" * 1000
    genome = tmp_path / "genome.fa"
    genome.write_text(f">chrX\n{chrx}\n>chrY\n{par + ''.join(rng.choice(list('ACGT'), 2000))}\n")
    attrs = {"transcript_type": "protein_coding", "tag": "PAR"}
    lines = []
    for chrom, tx, gene in (
        ("chrX", "ENST1.1", "ENSG1.1"),
        ("chrY", "ENST1.1_PAR_Y", "ENSG1.1_PAR_Y"),
        ("chrX", "ENST2.1", "ENSG2.1"),  # outside the PAR
    ):
        start = 1101 if tx == "ENST2.1" else 101
        lines += [
            gtf_line(chrom, kind, start + a, start + b, tx, gene, attrs)
            for kind, a, b in (("transcript", 0, 299), ("exon", 0, 99), ("exon", 200, 299))
        ]
        lines.append(gtf_line(chrom, "CDS", start, start + 89, tx, gene, attrs, phase="0"))
    gtf = tmp_path / "annotation.gtf"
    gtf.write_text("\n".join(lines) + "\n")
    transcripts = tmp_path / "transcripts.parquet"
    table = read_annotation(gtf, par_y=par_y)
    write_transcripts(table, transcripts)
    seq = {k: tmp_path / f"{k}" for k in ("rna.fa.gz", "protein.fa.gz", "windows.bed")}
    build_sequences(table, genome, window, *seq.values(), edge=edge)

    samples = ["GTEX-A-0001-SM-1", "GTEX-B-0001-SM-2"]
    attributes = tmp_path / "attributes.tsv"
    attributes.write_text(
        "SAMPID\tSMTS\tSMTSD\n" + "".join(f"{s}\tLiver\tLiver\n" for s in samples)
    )
    gct = tmp_path / "tpm.gct"
    gct.write_text(
        "#1.2\n3\t2\ntranscript_id\tgene_id\t" + "\t".join(samples) + "\n"
        "ENST1.1\tENSG1.1\t5.0\t7.0\nENST1.1_PAR_Y\tENSG1.1_PAR_Y\t0\t0\n"
        "ENST2.1\tENSG2.1\t1.0\t3.0\n"
    )
    targets, stats = tmp_path / "targets.parquet", tmp_path / "targets.stats.tsv"
    build_targets(gct, attributes, transcripts, "smts", ["Liver"], 1, targets, stats)
    splits = tmp_path / "splits.tsv"
    build_splits(transcripts, splits, "gene", valid_fraction=0.0, test_fraction=0.0)
    out = tmp_path / "dataset.parquet"
    build_dataset(transcripts, *seq.values(), targets, splits, genome, out)
    return read_dataset(out)[0], stats.read_text()


def gtf_line(chrom, kind, start, end, tx, gene, attrs, phase="."):
    text = f'gene_id "{gene}"; transcript_id "{tx}"; gene_name "N";'
    text += "".join(f' {key} "{value}";' for key, value in attrs.items())
    return "\t".join([chrom, "HAVANA", kind, str(start), str(end), ".", "+", phase, text])


@pytest.mark.parametrize("chry", ["masked", "unmasked"])
def test_par_y_copies_never_reach_the_dataset_by_default(tmp_path, chry):
    from isoflow.config import SCHEMA, load_schema

    default = load_schema(SCHEMA)["properties"]["annotation"]["properties"]["par_y"]["default"]
    dataset, stats = _par_chain(tmp_path, chry, default)
    assert sorted(dataset["transcript_id"]) == ["ENST1.1", "ENST2.1"]
    assert "# transcripts_par_y_gtex\t1\n# transcripts_par_y_annotation\t0\n" in stats
    # What the default prevents: kept, the copy is an all-N RNA (masked chrY) or the X copy's
    # RNA under a target of 0 instead of the X copy's (unmasked chrY).
    kept, stats = _par_chain(tmp_path / "keep", chry, "keep")
    rows = kept.set_index("transcript_id")
    assert "ENST1.1_PAR_Y" in rows.index
    copy, original = rows.loc["ENST1.1_PAR_Y"], rows.loc["ENST1.1"]
    if chry == "masked":
        assert set(copy["rna_seq"]) == {"N"} and set(copy["protein_seq"]) == {"X"}
    else:
        assert copy["rna_seq"] == original["rna_seq"]
        assert copy["Liver"] == 0 and original["Liver"] > 0
    assert "# transcripts_par_y_annotation\t1\n" in stats


def test_targets_sequences_and_dataset_log_progress_lines(tmp_path, monkeypatch, caplog):
    import isoflow.progress

    monkeypatch.setattr(isoflow.progress, "PROGRESS_EVERY_S", 0.0)  # a line at every update
    with caplog.at_level("INFO"):
        _par_chain(tmp_path, "masked", "drop")
    lines = [r.getMessage() for r in caplog.records]

    def having(prefix):
        return [line for line in lines if line.startswith(prefix)]

    assert having("targets: GCT: 3 / 3 rows (100.0%), ")
    assert having("targets: GCT: 3 rows done in ")
    assert having("sequences: 2 / 2 transcripts (100.0%), ")
    assert having("sequences: 2 transcripts done in ")
    assert having("dataset: RNA: 2 / 2 records (100.0%), ")
    assert having("dataset: protein: 2 records, ")
    assert all(", ETA " in line for line in having("targets: GCT: 3 / 3"))


@pytest.mark.parametrize("edge", ["pad", "drop"])
def test_window_edges_drop_vs_pad(tmp_path, caplog, edge):
    """dna.edge: a 2,048-bp window around ENST1.1's TSS (0-based 100) starts at -924 and
    ENST2.1's (1,100) at 76: pad keeps both (the loader N-pads), drop leaves ENST1.1 out of
    the dataset, listed in the BED's '# dropped' lines and counted in the dataset log."""
    with caplog.at_level("INFO"):
        dataset, _ = _par_chain(tmp_path, "masked", "drop", window=2048, edge=edge)
    bed = (tmp_path / "windows.bed").read_text().splitlines()
    if edge == "pad":
        assert sorted(dataset["transcript_id"]) == ["ENST1.1", "ENST2.1"]
        assert bed == ["chrX\t-924\t1124\tENST1.1\t0\t+", "chrX\t76\t2124\tENST2.1\t0\t+"]
        assert "N-padded when loaded" in caplog.text
    else:
        assert dataset["transcript_id"].tolist() == ["ENST2.1"]
        assert bed == [
            "# dropped\tchrX\t-924\t1124\tENST1.1\t0\t+",
            "chrX\t76\t2124\tENST2.1\t0\t+",
        ]
        assert (
            "1 transcripts (1 genes) left out: their DNA window runs past a contig end"
            in caplog.text
        )
        assert "1 windows run past a contig end (dropped (dna.edge: drop" in caplog.text


def test_a_missing_window_not_listed_as_dropped_is_still_an_error(tmp_path):
    _par_chain(tmp_path, "masked", "drop", window=2048, edge="drop")
    bed = tmp_path / "windows.bed"
    bed.write_text(bed.read_text().replace("# dropped\tchrX\t-924\t1124\tENST1.1\t0\t+\n", ""))
    paths = [tmp_path / n for n in ("transcripts.parquet", "rna.fa.gz", "protein.fa.gz")]
    with pytest.raises(InputError, match=r"windows\.bed:ENST1\.1: no DNA window \(1 missing\)"):
        build_dataset(*paths, bed, tmp_path / "targets.parquet", tmp_path / "splits.tsv",
                      tmp_path / "genome.fa", tmp_path / "d.parquet")  # fmt: skip
