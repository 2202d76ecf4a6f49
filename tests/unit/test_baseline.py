"""isoflow.baseline: sequence-free features, the ridge, and the rule on the demo."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.paths import REPO, SHARED_REAL, SNAKEMAKE
from helpers.training import METRICS_KEYS
from isoflow.baseline import (
    LENGTH_FEATURES,
    design_matrix,
    fit_ridge,
    gc_fraction,
    run_baseline,
    transcript_features,
)
from isoflow.errors import InputError
from isoflow.gtex import TISSUES_METADATA_KEY
from isoflow.metrics import r2_score
from isoflow.sequences import read_fasta

TISSUES = ["Liver", "Brain"]


def tiny_annotation() -> pd.DataFrame:
    """Three transcripts: coding on + (2 exons), coding on - (3 exons), non-coding (1 exon)."""
    return pd.DataFrame(
        {
            "transcript_id": ["T1.1", "T2.1", "T3.1"],
            "transcript_type": ["protein_coding", "protein_coding", "lncRNA"],
            "exon_starts": [[100, 200], [10, 50, 90], [0]],
            "exon_ends": [[110, 230], [20, 55, 100], [8]],
            "utr5_len": [4, 3, 0],
            "cds_len": [30, 18, 0],
            "utr3_len": [6, 4, 0],
        }
    )


TINY_RNA = {
    "T1.1": "GGGG" + "AT" * 15 + "CCCCCC",  # 40 nt: 10 G/C
    "T2.1": "ACGTN" * 5,  # 25 nt: 10 G/C of 20 called
    "T3.1": "gcgcNNNN",  # 8 nt, lower case: 4 G/C of 4 called
}


def test_features_of_a_tiny_frame_by_hand():
    features = transcript_features(tiny_annotation(), TINY_RNA, "rna.fa.gz")
    assert list(features["transcript_id"]) == ["T1.1", "T2.1", "T3.1"]
    assert list(features["tx_len"]) == [10 + 30, 10 + 5 + 10, 8]
    assert list(features["exon_count"]) == [2, 3, 1]
    assert list(features["utr5_len"]) == [4, 3, 0]
    assert list(features["cds_len"]) == [30, 18, 0]
    assert list(features["utr3_len"]) == [6, 4, 0]
    assert features["gc"].tolist() == pytest.approx([10 / 40, 10 / 20, 4 / 4])
    assert list(features["transcript_type"]) == ["protein_coding", "protein_coding", "lncRNA"]


REAL_CHR9 = SHARED_REAL / "bambu_chr9"


@pytest.mark.needs("shared")
def test_features_of_real_ensembl_transcripts_agree_with_the_genome():
    """105 Ensembl 91 transcripts (both strands, NF tags, 12 biotypes) on soft-masked GRCh38:
    GC counted straight from the exons of the genome (G+C does not depend on the strand)."""
    import pysam

    from isoflow.annotation import read_annotation
    from isoflow.sequences import transcript_sequences

    gtf = REAL_CHR9 / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf"
    fasta = REAL_CHR9 / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa"
    annotation = read_annotation(gtf, {})
    features = transcript_features(annotation, dict(transcript_sequences(annotation, fasta)))
    assert len(features) == 105 and features["transcript_type"].nunique() == 12
    coding = features[features["cds_len"] > 0]
    assert len(coding) == 41
    assert (coding[["utr5_len", "cds_len", "utr3_len"]].sum(axis=1) == coding["tx_len"]).all()
    with pysam.FastaFile(str(fasta)) as genome:
        for row, feature in zip(annotation.itertuples(), features.itertuples(), strict=True):
            exons = "".join(
                genome.fetch(row.chrom, start, end).upper()
                for start, end in zip(row.exon_starts, row.exon_ends, strict=True)
            )
            assert feature.tx_len == len(exons) and feature.exon_count == len(row.exon_starts)
            expected = (exons.count("G") + exons.count("C")) / len(exons)
            assert feature.gc == pytest.approx(expected), row.transcript_id


def test_gc_leaves_out_letters_other_than_acgtu():
    assert gc_fraction("GCAU") == 0.5
    assert gc_fraction("NNGA") == 0.5
    assert math.isnan(gc_fraction("NNNN"))
    assert math.isnan(gc_fraction(""))


def test_a_transcript_without_rna_is_one_line_naming_it():
    rna = {k: v for k, v in TINY_RNA.items() if k != "T2.1"}
    with pytest.raises(InputError) as err:
        transcript_features(tiny_annotation(), rna, "rna.fa.gz")
    assert str(err.value) == "rna.fa.gz:T2.1: no RNA sequence (1 missing)"


def test_an_rna_of_another_length_than_its_exons_is_an_error():
    rna = {**TINY_RNA, "T3.1": "GCGCGCGCG"}
    with pytest.raises(InputError, match=r"^rna.fa.gz:T3.1: RNA is 9 nt but its exons sum to 8"):
        transcript_features(tiny_annotation(), rna, "rna.fa.gz")


def test_design_matrix_takes_log_lengths_gc_and_one_biotype_column_each():
    features = transcript_features(tiny_annotation(), TINY_RNA)
    x, names = design_matrix(features, ["lncRNA", "protein_coding", "snRNA"])
    assert names == [
        *(f"log1p_{name}" for name in LENGTH_FEATURES),
        "gc",
        "biotype=lncRNA",
        "biotype=protein_coding",
        "biotype=snRNA",
    ]
    assert x[:, 0] == pytest.approx(np.log1p([40, 25, 8]))
    assert x[:, 4] == pytest.approx(np.log1p([2, 3, 1]))
    assert x[:, 6:].tolist() == [[0, 1, 0], [0, 1, 0], [1, 0, 0]]


def planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """log length drives tissue 0 (and, negatively, tissue 1); tissue 2 is noise; the other
    columns are noise features."""
    log_len = rng.normal(7.0, 1.0, n)
    x = np.column_stack([log_len, rng.normal(0, 1, n), rng.uniform(0.3, 0.6, n)])
    y = np.column_stack(
        [
            0.8 * log_len + rng.normal(0, 0.5, n),
            3.0 - 0.5 * log_len + rng.normal(0, 0.5, n),
            rng.normal(2.0, 1.0, n),
        ]
    )
    return x, y


def test_ridge_recovers_a_planted_length_effect():
    rng = np.random.default_rng(0)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (planted(n, rng) for n in (800, 300, 300))
    fit = fit_ridge(x_tr, y_tr, x_va, y_va)
    predicted = fit.predict(x_te)
    # The best any model can do: var(signal) / (var(signal) + var(noise)).
    assert r2_score(y_te[:, 0], predicted[:, 0]) > 0.64 / (0.64 + 0.25) - 0.05
    assert r2_score(y_te[:, 1], predicted[:, 1]) > 0.25 / (0.25 + 0.25) - 0.07
    assert r2_score(y_te[:, 2], predicted[:, 2]) < 0.02
    # Per sd of log length (sd 1 here): the planted slopes, the noise features near 0.
    assert fit.coef[0, 0] == pytest.approx(0.8, abs=0.06)
    assert fit.coef[0, 1] == pytest.approx(-0.5, abs=0.06)
    assert np.abs(fit.coef[1:, :2]).max() < 0.06
    assert np.abs(fit.coef[:, 2]).max() < 0.1


def test_ridge_with_a_tiny_alpha_is_least_squares():
    rng = np.random.default_rng(1)
    x, y = planted(200, rng)
    fit = fit_ridge(x, y, x, y, alphas=[1e-9])
    design = np.column_stack([np.ones(len(x)), x])
    ols, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert fit.predict(x) == pytest.approx(design @ ols, abs=1e-6)


def test_ridge_picks_alpha_on_the_valid_split():
    """Valid targets with the opposite slope: the strongest shrinkage fits them best."""
    rng = np.random.default_rng(2)
    x_tr, y_tr = planted(300, rng)
    x_va, y_va = planted(300, rng)
    fit = fit_ridge(x_tr, y_tr[:, :1], x_va, -y_va[:, :1], alphas=[1e-3, 1.0, 1e6])
    assert fit.alpha.tolist() == [1e6]
    fit = fit_ridge(x_tr, y_tr[:, :1], x_va, y_va[:, :1], alphas=[1e-3, 1e6])
    assert fit.alpha.tolist() == [1e-3]


def test_ridge_fills_missing_gc_and_copes_with_a_constant_column():
    rng = np.random.default_rng(3)
    x, y = planted(200, rng)
    x = np.column_stack([x, np.zeros(len(x))])  # a biotype absent from the training split
    x[::7, 2] = np.nan
    fit = fit_ridge(x, y, x, y)
    assert fit.mean[2] == pytest.approx(np.nanmean(x[:, 2]))
    assert fit.scale[3] == 1.0 and np.abs(fit.coef[3]).max() < 1e-12
    test = x[:3].copy()
    test[:, 3] = 1.0  # the biotype only the test split has
    assert np.isfinite(fit.predict(test)).all()


def write_fasta_gz(path: Path, records: dict[str, str]) -> Path:
    path.write_bytes(gzip.compress("".join(f">{k}\n{v}\n" for k, v in records.items()).encode()))
    return path


def write_inputs(root: Path, n_genes: int = 60, seed: int = 0) -> dict[str, Path]:
    """transcripts.parquet, rna.fa.gz and a dataset table (targets columns only) whose
    targets follow log transcript length, two isoforms a gene, genes split 60/20/20."""
    rng = np.random.default_rng(seed)
    rows, rna, dataset = [], {}, []
    for g in range(n_genes):
        split = "train" if g % 5 < 3 else ("valid" if g % 5 == 3 else "test")
        for k in range(2):
            tid, length = f"ENST{g:05d}{k}.1", int(rng.integers(100, 3000))
            first = int(rng.integers(20, length - 20))
            rows.append(
                {
                    "transcript_id": tid,
                    "transcript_type": "protein_coding" if k == 0 else "lncRNA",
                    "exon_starts": [0, 10_000],
                    "exon_ends": [first, 10_000 + length - first],
                    "utr5_len": 0,
                    "cds_len": 0,
                    "utr3_len": 0,
                }
            )
            rna[tid] = "".join(rng.choice(list("ACGT"), length))
            signal = np.log(length)
            dataset.append(
                {
                    "transcript_id": tid,
                    "gene_id": f"ENSG{g:05d}.1",
                    "split": split,
                    "Liver": signal + rng.normal(0, 0.2),
                    "Brain": 8 - signal + rng.normal(0, 0.2),
                }
            )
    paths = {
        "transcripts": root / "transcripts.parquet",
        "rna": write_fasta_gz(root / "rna.fa.gz", rna),
        "dataset": root / "demo.parquet",
    }
    pd.DataFrame(rows).to_parquet(paths["transcripts"], index=False)
    write_dataset_table(pd.DataFrame(dataset), paths["dataset"])
    return paths


def write_dataset_table(frame: pd.DataFrame, path: Path, tissues=TISSUES) -> None:
    frame = frame.astype(dict.fromkeys(tissues, "float32"))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), TISSUES_METADATA_KEY: json.dumps(tissues)}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def outputs(root: Path) -> dict[str, Path]:
    return {
        "metrics_json": root / "out" / "metrics.json",
        "predictions_parquet": root / "out" / "predictions.parquet",
        "features_tsv": root / "out" / "features.tsv",
    }


def run(paths: dict[str, Path], root: Path, **kwargs) -> dict:
    return run_baseline(
        paths["transcripts"], paths["rna"], paths["dataset"], **outputs(root), **kwargs
    )


def test_run_baseline_writes_a_training_runs_formats(tmp_path):
    paths = write_inputs(tmp_path)
    metrics = run(paths, tmp_path)
    out = outputs(tmp_path)
    assert json.loads(out["metrics_json"].read_text()) == metrics
    assert set(metrics) == METRICS_KEYS
    assert metrics["n_test"] == 2 * 12
    assert list(metrics["per_tissue"]) == TISSUES
    assert metrics["mean"]["r2"] > 0.8  # the planted length effect, test split
    predictions = pd.read_parquet(out["predictions_parquet"])
    assert list(predictions.columns) == [
        "transcript_id",
        "gene_id",
        "tissue",
        "observed",
        "predicted",
    ]
    assert len(predictions) == 2 * 12 * len(TISSUES)
    assert list(predictions["tissue"][:2]) == TISSUES
    assert predictions["observed"].dtype == np.float32
    assert predictions["predicted"].dtype == np.float32
    dataset = pd.read_parquet(paths["dataset"]).set_index("transcript_id")
    first = predictions.iloc[1]
    assert first["observed"] == dataset.loc[first["transcript_id"], "Brain"]
    assert dataset.loc[predictions["transcript_id"], "split"].eq("test").all()
    features = pd.read_csv(out["features_tsv"], sep="\t")
    assert list(features.columns) == ["feature", *TISSUES, "mean"]
    assert features["feature"].iloc[0] == "log1p_tx_len"
    top = features.iloc[0]
    assert top["Liver"] > 0 > top["Brain"]
    assert top["mean"] == pytest.approx((top["Liver"] + top["Brain"]) / 2, abs=1e-5)


def test_predictions_have_the_same_arrow_schema_as_a_training_runs(tmp_path):
    pytest.importorskip("torch")
    from isoflow.train import write_outputs

    paths = write_inputs(tmp_path)
    run(paths, tmp_path)
    baseline = pq.read_schema(outputs(tmp_path)["predictions_parquet"])
    frame = pd.read_parquet(paths["dataset"]).head(4)
    write_outputs(tmp_path / "run", frame, TISSUES, np.zeros((4, 2)), [])
    trained = pq.read_schema(tmp_path / "run" / "predictions.parquet")
    assert baseline.remove_metadata() == trained.remove_metadata()


def rewrite_dataset(paths: dict[str, Path], change) -> None:
    frame = pd.read_parquet(paths["dataset"])
    write_dataset_table(change(frame), paths["dataset"])


def set_cell(row: int, column: str, value):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return change


@pytest.mark.parametrize(
    "change, expected",
    [
        (set_cell(3, "Brain", np.nan), r"demo.parquet:ENST00001.\.1: target of Brain is nan$"),
        (
            lambda f: f[f["split"] != "valid"],
            r"demo.parquet:split: no valid transcripts: the baseline fits on train",
        ),
        (
            lambda f: pd.concat([f, f.tail(1)]),
            r"demo.parquet:ENST00059.\.1: listed twice$",
        ),
        (
            set_cell(0, "transcript_id", "ENST99999999.1"),
            r"transcripts.parquet:ENST99999999.1: dataset transcript not in the annotation",
        ),
    ],
    ids=["nan target", "no valid split", "duplicate", "not in annotation"],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, change, expected):
    paths = write_inputs(tmp_path)
    rewrite_dataset(paths, change)
    with pytest.raises(InputError, match=expected) as err:
        run(paths, tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_table_without_tissue_metadata_is_not_a_dataset(tmp_path):
    paths = write_inputs(tmp_path)
    pd.read_parquet(paths["dataset"]).to_parquet(paths["dataset"], index=False)
    with pytest.raises(InputError, match=r"demo.parquet: no isoflow.tissues schema metadata"):
        run(paths, tmp_path)


def test_a_missing_rna_writes_nothing(tmp_path):
    paths = write_inputs(tmp_path)
    rna = read_fasta(paths["rna"])
    del rna["ENST000011.1"]
    write_fasta_gz(paths["rna"], rna)
    with pytest.raises(InputError, match=r"rna.fa.gz:ENST000011.1: no RNA sequence \(1 missing\)$"):
        run(paths, tmp_path)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_unknown_model_is_refused(tmp_path):
    paths = write_inputs(tmp_path)
    with pytest.raises(InputError, match=r"^config:baseline.model: 'gbm' is not one of"):
        run(paths, tmp_path, model="gbm")


def strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason=f"{SNAKEMAKE} missing")
def test_rule_on_the_demo(tmp_path):
    """The data half of the demo and the baseline rule, in an empty working directory."""
    command = [
        SNAKEMAKE, "results/baseline/metrics.json", "-s", REPO / "Snakefile", "-d", tmp_path,
        "--cores", "2", "--configfile", REPO / "config" / "demo.yaml",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    out = tmp_path / "results" / "baseline"
    metrics = strict_json((out / "metrics.json").read_text())
    dataset = pd.read_parquet(tmp_path / "results" / "dataset" / "demo.parquet")
    tissues = json.loads(pq.read_schema(tmp_path / "results" / "dataset" / "demo.parquet")
                         .metadata[TISSUES_METADATA_KEY])  # fmt: skip
    n_test = int((dataset["split"] == "test").sum())
    assert metrics["n_test"] == n_test
    assert list(metrics["per_tissue"]) == tissues
    assert len(pd.read_parquet(out / "predictions.parquet")) == n_test * len(tissues)
    features = pd.read_csv(out / "features.tsv", sep="\t")
    assert list(features.columns) == ["feature", *tissues, "mean"]
    assert (tmp_path / "logs" / "baseline" / "baseline.log").stat().st_size > 0
    assert (tmp_path / "benchmarks" / "baseline" / "baseline.tsv").exists()
    # The demo's expression depends on the sequence (docs/demo.md), partly through what the
    # baseline sees (GC, lengths): it predicts something, far from everything.
    assert 0.05 < metrics["mean"]["r2"] < 0.6
