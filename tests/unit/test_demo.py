"""The demo data: deterministic, GENCODE/GTEx layouts, real ORFs, a planted signal that holds."""

from __future__ import annotations

import gzip
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.paths import SHARED_REAL as REAL
from isoflow import demo
from isoflow.alphabet import reverse_complement
from isoflow.annotation import read_annotation
from isoflow.gtex import aggregate_tpm


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    demo.make_demo(out, seed=0)
    (out / "seconds").write_text(str(time.perf_counter() - start))
    return out


def read_fasta(path: Path) -> dict[str, str]:
    seqs: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            seqs[name] = []
        else:
            assert len(line) <= 60
            seqs[name].append(line)
    return {k: "".join(v) for k, v in seqs.items()}


def read_gtf(path: Path) -> list[dict]:
    """A deliberately small GTF reader, independent of isoflow.annotation."""
    rows = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            assert len(f) == 9, line
            attrs = dict(re.findall(r'(\w+) "([^"]*)"', f[8]))
            attrs["tags"] = re.findall(r'tag "([^"]*)"', f[8])
            number = re.search(r"exon_number (\d+);", f[8])
            rows.append(
                {
                    "chrom": f[0],
                    "feature": f[2],
                    "start": int(f[3]) - 1,
                    "end": int(f[4]),
                    "strand": f[6],
                    "frame": f[7],
                    "exon_number": int(number.group(1)) if number else None,
                    **attrs,
                }
            )
    return rows


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    design = np.column_stack([np.ones(len(y)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(1 - (y - design @ coef).var() / y.var())


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_data(demo_dir, tmp_path):
    again = demo.make_demo(tmp_path / "again", seed=0)
    other = demo.make_demo(tmp_path / "other", seed=1)
    for key, name in demo.DEMO_FILES.items():
        assert (demo_dir / name).read_bytes() == again[key].read_bytes(), name
    assert (demo_dir / "genome.fa").read_bytes() != other["genome"].read_bytes()


def test_runs_in_seconds(demo_dir):
    assert float((demo_dir / "seconds").read_text()) < 10


def test_genome_is_a_few_mb_with_human_like_gc(demo_dir):
    genome = read_fasta(demo_dir / "genome.fa")
    assert list(genome) == ["chr1", "chr2", "chr3"]
    total = sum(len(s) for s in genome.values())
    assert 2_000_000 < total < 8_000_000
    joined = "".join(genome.values())
    assert set(joined) == set("ACGT")
    # background 41 % GC; the planted promoters (30-70 % GC) raise it a little
    assert 0.39 < (joined.count("G") + joined.count("C")) / total < 0.45


def test_annotation_reads_as_gencode(demo_dir):
    table = read_annotation(demo_dir / "annotation.gtf.gz", {})
    genome = read_fasta(demo_dir / "genome.fa")
    assert 1_500 <= len(table) <= 2_500
    assert 400 <= table.gene_id.nunique() <= 800
    assert set(table.transcript_type) == {"protein_coding", "lincRNA", "retained_intron"}
    assert set(table.strand) == {"+", "-"}
    assert table.transcript_id.str.fullmatch(r"ENST\d{11}\.1").all()
    assert table.gene_id.str.fullmatch(r"ENSG\d{11}\.1").all()
    per_gene = table.groupby("gene_id").size()
    assert (per_gene >= 3).sum() > 100  # multi-isoform genes
    tx_len = table.apply(lambda r: sum(np.subtract(r.exon_ends, r.exon_starts)), axis=1)
    assert tx_len.max() <= 3_000
    coding = table[table.cds_len > 0]
    assert (coding.cds_len // 3).max() <= 301
    assert (coding.utr3_len > 0).sum() > 0.9 * len(coding)
    tags = table.tags.apply(set)
    start_nf = table[tags.apply(lambda t: {"cds_start_NF", "mRNA_start_NF"} <= t)]
    assert len(start_nf) >= 1 and (start_nf.cds_phase != 0).any()
    assert (start_nf.utr5_len == 0).all()
    end_nf = table[tags.apply(lambda t: "cds_end_NF" in t)]
    assert len(end_nf) >= 1 and (end_nf.utr3_len == 0).all()
    # alternative TSS within a gene
    assert (table.groupby("gene_id").tss.nunique() > 1).sum() > 100
    # a TSS a few hundred bp from a chromosome end, on each side
    lengths = table.chrom.map({k: len(v) for k, v in genome.items()})
    assert (table.tss < 500).any()
    assert ((lengths - table.tss) < 500).any()
    # the DNA window (2,048 bp centred on the TSS) holds the promoter, not the 3' end
    # (a transcript starting inside the gene, mRNA_start_NF, may be short)
    full = table[~tags.apply(lambda t: "mRNA_start_NF" in t)]
    far = np.where(full.strand == "+", full.tx_end - full.tss, full.tss - full.tx_start)
    assert (far > 1024).all()


def test_gtf_structure_and_every_cds_is_an_orf(demo_dir):
    genome = read_fasta(demo_dir / "genome.fa")
    rows = read_gtf(demo_dir / "annotation.gtf.gz")
    genes = {r["gene_id"]: r for r in rows if r["feature"] == "gene"}
    by_tx: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["feature"] != "gene":
            by_tx[r["transcript_id"]][r["feature"]].append(r)
    assert {r["feature"] for r in rows} == {
        "gene",
        "transcript",
        "exon",
        "CDS",
        "start_codon",
        "stop_codon",
        "UTR",
    }
    n_cds = 0
    for tid, parts in by_tx.items():
        (tx,) = parts["transcript"]
        gene = genes[tx["gene_id"]]
        assert gene["start"] <= tx["start"] < tx["end"] <= gene["end"]
        for key in ("gene_type", "gene_name", "transcript_type", "transcript_name", "level"):
            assert key in tx or key == "level", (tid, key)
        exons = parts["exon"]
        assert [e["exon_number"] for e in exons] == list(range(1, len(exons) + 1))
        reverse = tx["strand"] == "-"
        assert exons == sorted(exons, key=lambda e: e["start"], reverse=reverse)
        assert min(e["start"] for e in exons) == tx["start"]
        assert max(e["end"] for e in exons) == tx["end"]
        cds = parts["CDS"]
        if not cds:
            assert tx["transcript_type"] != "protein_coding"
            continue
        n_cds += 1
        seq = "".join(
            genome[c["chrom"]][c["start"] : c["end"]] for c in cds[:: -1 if reverse else 1]
        )
        if reverse:
            seq = reverse_complement(seq)
        for c in cds:
            assert c["frame"] in "012"
            exon = exons[c["exon_number"] - 1]
            assert exon["start"] <= c["start"] < c["end"] <= exon["end"]
        frame = int(cds[0]["frame"])
        protein = demo.translate(seq, frame).removesuffix("*")
        assert "*" not in protein, tid
        if "cds_start_NF" in tx["tags"]:
            assert frame != 0 or not parts["start_codon"]
        else:
            assert frame == 0 and seq.startswith("ATG"), tid
            (start,) = parts["start_codon"]
            assert start["end"] - start["start"] == 3
        if "cds_end_NF" in tx["tags"]:
            assert not parts["stop_codon"]
        else:
            (stop,) = parts["stop_codon"]
            codon = genome[stop["chrom"]][stop["start"] : stop["end"]]
            codon = reverse_complement(codon) if reverse else codon
            assert codon in demo.STOP_CODONS, tid
            assert (len(seq) - frame) % 3 == 0
        # UTR = exon minus CDS (GENCODE: the UTR includes the stop codon)
        utr = sum(u["end"] - u["start"] for u in parts["UTR"])
        assert utr == sum(e["end"] - e["start"] for e in exons) - len(seq), tid
    assert n_cds > 1_000


def test_gct_and_sample_attributes_follow_gtex_layout(demo_dir):
    attrs = pd.read_csv(demo_dir / "sample_attributes.tsv", sep="\t", dtype=str)
    assert list(attrs.columns) == demo.SAMPLE_ATTRIBUTE_COLUMNS
    assert attrs.SAMPID.str.fullmatch(r"GTEX-[0-9A-Z]{4,5}-\d{4}-SM-[0-9A-Z]{5}").all()
    assert attrs.SAMPID.is_unique
    rnaseq = attrs[attrs.SMAFRZE == "RNASEQ"]
    assert rnaseq.SMTS.nunique() >= 8
    assert rnaseq.groupby("SMTS").size().min() >= 3
    assert (attrs.SMAFRZE != "RNASEQ").any()  # rows without expression, as in GTEx
    with gzip.open(demo_dir / "transcript_tpm.gct.gz", "rt") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "#1.2"
    n_rows, n_cols = map(int, lines[1].split("\t"))
    header = lines[2].split("\t")
    assert header[:2] == ["transcript_id", "gene_id"]
    assert len(header) - 2 == n_cols and len(lines) - 3 == n_rows
    assert set(header[2:]) == set(rnaseq.SAMPID)
    assert all(len(line.split("\t")) == n_cols + 2 for line in lines[3:])
    assert sum(line.endswith("_PAR_Y", 0, line.index("\t")) for line in lines[3:]) == 2


def test_sample_attribute_columns_match_real_gtex():
    real = REAL / "gtex_v8_sample_attrs" / "BrainFrontalCortex_v8_SampleAttributes_subset.tsv"
    if not real.exists():
        pytest.skip(f"{real} not available")
    assert real.open().readline().rstrip("\n").split("\t") == demo.SAMPLE_ATTRIBUTE_COLUMNS
    portal = pd.read_csv(REAL / "gtex_v8_sample_attrs" / "GTEx_Portal.csv", dtype=str)
    uberon_of = dict(zip(portal.Tissue, portal.UBERON, strict=True))
    for _, smtsd, uberon in demo.TISSUES:
        assert uberon_of[smtsd] == uberon, smtsd


def test_planted_components_are_measured_on_the_written_sequence(demo_dir):
    genome = read_fasta(demo_dir / "genome.fa")
    signal = pd.read_csv(demo_dir / "planted_signal.tsv", sep="\t", comment="#")
    table = read_annotation(demo_dir / "annotation.gtf.gz", {})
    signal = signal.merge(table.drop(columns=["gene_id", "transcript_type"]), on="transcript_id")
    for row in signal.itertuples():
        chrom = genome[row.chrom]
        if row.strand == "+":
            promoter = chrom[max(0, row.tss - 1000) : row.tss]
        else:
            promoter = reverse_complement(chrom[row.tss + 1 : row.tss + 1001])
        gc = (promoter.count("G") + promoter.count("C")) / len(promoter)
        assert gc == pytest.approx(row.dna_value, abs=1e-6), row.transcript_id
        rna = "".join(chrom[a:b] for a, b in zip(row.exon_starts, row.exon_ends, strict=True))
        rna = reverse_complement(rna) if row.strand == "-" else rna
        if row.cds_len > 0:
            utr3 = rna[len(rna) - row.utr3_len :] if row.utr3_len else ""
            are_per_100nt = 100 * demo.count_motif(utr3, "ATTTA") / len(rna)
            assert are_per_100nt == pytest.approx(row.rna_value, abs=1e-5), row.transcript_id
            cds = rna[row.utr5_len : row.utr5_len + row.cds_len]
            protein = demo.translate(cds, row.cds_phase).removesuffix("*")
            kr = (protein.count("K") + protein.count("R")) / len(protein)
            assert kr == pytest.approx(row.protein_value, abs=1e-6), row.transcript_id
        else:
            assert row.protein_value == demo.NONCODING_PROTEIN_VALUE
    # every component varies between isoforms of one gene somewhere
    for column in ("dna_value", "rna_value", "protein_value"):
        assert (signal.groupby("gene_id")[column].nunique() > 1).sum() > 50, column


def test_expression_is_driven_by_all_three_components(demo_dir):
    targets, stats = aggregate_tpm(
        demo_dir / "transcript_tpm.gct.gz", demo_dir / "sample_attributes.tsv", "smts"
    )
    tissues = demo.smts_tissues()
    assert list(stats.tissue) == tissues
    signal = pd.read_csv(demo_dir / "planted_signal.tsv", sep="\t", comment="#")
    y = targets.set_index("transcript_id").loc[signal.transcript_id, tissues].to_numpy()
    # the expected target the file records is what the samples give, up to sample noise
    expected = signal[tissues].to_numpy()
    assert np.corrcoef(y.ravel(), expected.ravel())[0, 1] > 0.97
    mean_y = y.mean(axis=1)
    components = signal[["dna_value", "rna_value", "protein_value"]].to_numpy(float)
    together = r_squared(components, mean_y)
    alone = [r_squared(components[:, [i]], mean_y) for i in range(3)]
    assert together > 0.85
    assert all(0.1 < r2 < 0.5 for r2 in alone), alone
    assert together > max(alone) + 0.4
    shuffled = np.random.default_rng(0).permutation(mean_y)
    assert r_squared(components, shuffled) < 0.02
    # tissues weigh the components differently
    per_tissue = np.array(
        [
            np.linalg.lstsq(np.column_stack([np.ones(len(y)), components]), y[:, j])[0][1:]
            for j in range(len(tissues))
        ]
    )
    per_tissue = np.abs(per_tissue)
    assert (per_tissue.max(axis=0) / per_tissue.min(axis=0)).min() > 1.3


def test_write_demo_moves_each_file_to_its_configured_path(tmp_path, demo_dir):
    outputs = {key: tmp_path / "out" / f"x_{name}" for key, name in demo.DEMO_FILES.items()}
    outputs["signal"] = tmp_path / "elsewhere" / "signal.tsv"
    demo.write_demo(outputs, seed=0)
    for key, name in demo.DEMO_FILES.items():
        assert outputs[key].read_bytes() == (demo_dir / name).read_bytes(), key
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"x_{name}" for key, name in demo.DEMO_FILES.items() if key != "signal"
    )


def test_unknown_demo_parameter_is_refused(tmp_path):
    with pytest.raises(TypeError, match="n_gene"):
        demo.make_demo(tmp_path, seed=0, n_gene=10)
    assert not any(tmp_path.iterdir())
