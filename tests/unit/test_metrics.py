"""isoflow.metrics against values computed by hand."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from isoflow.metrics import (
    COLLAPSE_RATIO,
    evaluate,
    prediction_spread,
    r2_score,
    tissue_means,
    tissue_metrics,
    within_gene_spearman,
)


def test_r2_by_hand():
    # SS_tot = 2, SS_res = 1
    assert r2_score([1, 2, 3], [1, 2, 4]) == pytest.approx(0.5)
    # predicting the mean gives 0; worse than the mean is negative
    assert r2_score([1, 2, 3], [2, 2, 2]) == pytest.approx(0.0)
    assert r2_score([1, 2, 3], [3, 2, 1]) == pytest.approx(1 - 8 / 2)


def test_spearman_and_pearson_by_hand():
    m = tissue_metrics(np.array([1, 2, 3, 4.0]), np.array([1, 3, 2, 4.0]))
    # d = (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15)
    assert m["spearman"] == pytest.approx(0.8)
    m = tissue_metrics(np.array([1, 2, 3.0]), np.array([2, 4, 7.0]))
    # cov = 5, var_obs = 2, var_pred = 114 / 9 (sums of squares)
    assert m["pearson"] == pytest.approx(5 / math.sqrt(2 * 114 / 9))


def test_constant_tissue_is_undefined_and_left_out_of_means():
    observed = np.array([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]])
    predicted = np.array([[1.0, 1.0], [2.0, 2.0], [4.0, 3.0]])
    result = evaluate(["g1", "g2", "g3"], observed, predicted, ["A", "B"])
    assert result["per_tissue"]["B"] == {"r2": None, "spearman": None, "pearson": None}
    assert result["mean"]["r2"] == pytest.approx(0.5)
    assert result["mean"]["spearman"] == pytest.approx(1.0)
    assert result["n_test"] == 3
    assert result["within_gene_spearman"] is None  # no gene has two isoforms
    assert (result["within_gene_groups"], result["within_gene_tied"]) == (0, 0)
    assert result["constant_prediction_tissues"] == []  # B's observed values are constant


def test_within_gene_spearman_by_hand():
    genes = ["A", "A", "A", "B", "B", "C", "D", "D"]
    observed = np.array(
        [[1, 1], [2, 2], [3, 3], [1, 1], [2, 2], [9, 9], [5, 5], [5, 5]], dtype=float
    )
    predicted = np.array(
        [[3, 1], [2, 3], [1, 2], [1, 2], [2, 1], [0, 0], [1, 1], [2, 2]], dtype=float
    )
    # tissue 0: A reversed -> -1, B same order -> 1; tissue 1: A d=(0,1,-1) -> 1 - 12/24 = 0.5,
    # B reversed -> -1. C has one isoform, D has constant observed values: both skipped.
    assert within_gene_spearman(genes, observed, predicted) == pytest.approx(
        np.mean([-1, 1, 0.5, -1])
    )


def test_within_gene_spearman_ties_use_average_ranks():
    # observed ranks (1.5, 1.5, 3) vs (1, 2, 3): rho = 1.5 / sqrt(1.5 * 2)
    rho = within_gene_spearman(["g", "g", "g"], np.array([1.0, 1.0, 2.0]), np.array([1, 2, 3.0]))
    assert rho == pytest.approx(1.5 / math.sqrt(3.0))


def test_tied_predictions_score_zero_so_every_run_is_averaged_over_the_same_groups():
    # a DNA-only model gives isoforms that share a TSS one value: it has not ranked them.
    # Skipping those groups averaged it over the few genes it could rank (the demo's DNA-only
    # run over 506 of 1,276 groups), above the full model; they score 0 and are counted
    genes = ["A", "A", "A", "B", "B", "C", "C"]
    observed = np.array([[1.0], [2.0], [3.0], [1.0], [2.0], [4.0], [4.0]])
    ranks_all = np.array([[1.0], [3.0], [2.0], [2.0], [1.0], [0.0], [1.0]])
    ties_b = np.array([[1.0], [2.0], [3.0], [5.0], [5.0], [0.0], [1.0]])
    full = evaluate(genes, observed, ranks_all, ["t"])
    tied = evaluate(genes, observed, ties_b, ["t"])
    # C's observed values tie: no order to match, skipped for every run alike
    assert (full["within_gene_groups"], full["within_gene_tied"]) == (2, 0)
    assert full["within_gene_spearman"] == pytest.approx(np.mean([0.5, -1.0]))
    assert (tied["within_gene_groups"], tied["within_gene_tied"]) == (2, 1)
    assert tied["within_gene_spearman"] == pytest.approx(np.mean([1.0, 0.0]))  # not 1.0
    assert within_gene_spearman(genes, observed, ties_b) == tied["within_gene_spearman"]


def test_a_tissue_with_constant_predictions_scores_zero_and_is_named():
    # a tissue the model predicts one value for stays in the means at 0 (it was left out,
    # so a run that failed on 2 of 5 tissues reported the mean of the other 3)
    observed = _observed(n=20, tissues=3)
    predicted = observed + np.random.default_rng(3).normal(0, 0.1, observed.shape)
    predicted[:, 1] = 7.0
    result = evaluate(np.arange(20).astype(str), observed, predicted, ["A", "B", "C"])
    assert result["per_tissue"]["B"]["spearman"] == 0.0
    assert result["per_tissue"]["B"]["pearson"] == 0.0
    assert result["per_tissue"]["B"]["r2"] < 0  # a constant far from the mean
    defined = [result["per_tissue"][t]["spearman"] for t in "AC"]
    assert result["mean"]["spearman"] == pytest.approx(sum(defined) / 3)
    assert result["constant_prediction_tissues"] == ["B"]
    json.dumps(result, allow_nan=False)


def test_shape_mismatch_is_an_error():
    # predicted of another shape than observed, or both with another number of columns than
    # tissues named: metrics under the wrong tissue names otherwise
    with pytest.raises(ValueError, match=r"observed \(1, 2\) and predicted \(1, 3\) must both"):
        evaluate(["a"], np.zeros((1, 2)), np.zeros((1, 3)), ["x", "y"])
    message = r"\(2, 3\) and predicted \(2, 3\) must both be \(n_transcripts, 2\)"
    with pytest.raises(ValueError, match=message):
        evaluate(["a", "b"], np.zeros((2, 3)), np.zeros((2, 3)), ["x", "y"])
    with pytest.raises(ValueError, match=r"must both be \(n_transcripts, 4\)"):
        tissue_means(np.zeros((2, 3)), np.zeros((2, 3)), ["w", "x", "y", "z"])


def _observed(n=50, tissues=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 1.0, size=(n, tissues))


def test_near_constant_predictions_are_marked_collapsed():
    # the demo's DNA-only run before the fix: predictions spread ~1e-5 of the observed, yet
    # their float-noise ranking gives a Spearman that looks like a result
    observed = _observed()
    rng = np.random.default_rng(1)
    predicted = 2.0 + 1e-5 * (observed + rng.normal(size=observed.shape))
    result = evaluate(np.arange(50).astype(str), observed, predicted, ["A", "B", "C"])
    assert result["mean"]["spearman"] > 0.5  # a "good" rank correlation of noise
    assert result["prediction_spread"] == pytest.approx(1e-5 * np.sqrt(2), rel=0.3)
    assert result["collapsed"] is True

    constant = evaluate(np.arange(50).astype(str), observed, np.full((50, 3), 2.0), list("ABC"))
    assert constant["prediction_spread"] == 0.0 and constant["collapsed"] is True


def test_real_predictions_are_not_collapsed():
    observed = _observed()
    predicted = 0.5 * observed + np.random.default_rng(2).normal(0, 0.3, observed.shape)
    result = evaluate(np.arange(50).astype(str), observed, predicted, ["A", "B", "C"])
    # median over tissues of sd(predicted) / sd(observed), computed by hand
    ratios = sorted(predicted[:, t].std() / observed[:, t].std() for t in range(3))
    assert result["prediction_spread"] == pytest.approx(ratios[1])
    assert result["prediction_spread"] > COLLAPSE_RATIO
    assert result["collapsed"] is False


def test_prediction_spread_skips_constant_tissues_and_is_none_when_undefined():
    observed = np.array([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]])
    predicted = np.array([[1.0, 5.0], [1.0, 6.0], [4.0, 9.0]])  # tissue 1 observed constant
    assert prediction_spread(observed, predicted) == pytest.approx(
        predicted[:, 0].std() / observed[:, 0].std()
    )
    constant = np.full((3, 2), 3.0)
    result = evaluate(["a", "b", "c"], constant, predicted, ["A", "B"])
    assert result["prediction_spread"] is None and result["collapsed"] is False


def test_metrics_are_strict_json_even_for_non_finite_input():
    # an infinite observed value (an overflowing TPM) must not turn into a NaN in metrics.json
    observed = _observed(n=6, tissues=2)
    observed[2, 0] = np.inf
    predicted = _observed(n=6, tissues=2, seed=5)
    result = evaluate(["g1", "g1", "g2", "g2", "g3", "g3"], observed, predicted, ["A", "B"])
    text = json.dumps(result, allow_nan=False)  # raises on NaN or Infinity
    assert "NaN" not in text and "Infinity" not in text
    assert result["per_tissue"]["A"]["r2"] is None
    # a NaN observed value leaves the tissue undefined, whether or not the predictions tie
    # (a constant prediction once scored 0 there while a varying one gave null)
    observed[2, 0] = np.nan
    for predicted_a in (np.ones(6), np.arange(6.0)):
        predicted[:, 0] = predicted_a
        result = evaluate(["g1", "g1", "g2", "g2", "g3", "g3"], observed, predicted, ["A", "B"])
        assert result["per_tissue"]["A"] == {"r2": None, "spearman": None, "pearson": None}
        assert result["constant_prediction_tissues"] == []


def _run_dir(tmp_path):
    """A run folder as rule train leaves it: predictions.parquet and a metrics.json written
    before tied predictions scored 0 (no within_gene_groups; the tied group skipped)."""
    import pandas as pd

    from isoflow.metrics import predictions_frame

    genes = ["A", "A", "A", "B", "B", "C", "C"]
    frame = pd.DataFrame(
        {
            "transcript_id": [f"T{i}" for i in range(7)],
            "gene_id": genes,
            "Liver": [1.0, 2.0, 3.0, 1.0, 2.0, 4.0, 6.0],
            "Lung": [3.0, 2.0, 1.0, 2.0, 1.0, 5.0, 4.0],
        }
    )
    predicted = np.array([[1, 2], [3, 1], [2, 0], [5, 4], [5, 3], [1, 1], [2, 2.0]])
    run = tmp_path / "results/runs/r_s0"
    run.mkdir(parents=True)
    predictions_frame(frame, ["Liver", "Lung"], predicted).to_parquet(run / "predictions.parquet")
    new = evaluate(genes, frame[["Liver", "Lung"]].to_numpy(), predicted, ["Liver", "Lung"])
    old = {k: v for k, v in new.items() if k not in ("within_gene_groups", "within_gene_tied")}
    old.pop("constant_prediction_tissues")
    old["within_gene_spearman"] = 0.9  # as the old rule averaged it
    (run / "metrics.json").write_text(json.dumps(old))
    return run, new


def test_rescore_rewrites_an_old_metrics_json_and_the_report_refuses_one_until_then(tmp_path):
    from isoflow import commands
    from isoflow.errors import InputError
    from isoflow.report.readers import read_metrics

    run, expected = _run_dir(tmp_path)
    with pytest.raises(InputError, match=f"isoflow rescore {run}$") as err:
        read_metrics(run / "metrics.json")
    assert "\n" not in str(err.value) and "within_gene_groups" in str(err.value)
    assert commands.main(["rescore", str(run)]) == 0
    rescored = json.loads((run / "metrics.json").read_text())
    assert rescored == json.loads(json.dumps(expected))  # the float32 predictions, same values
    assert (rescored["within_gene_groups"], rescored["within_gene_tied"]) == (6, 1)
    assert read_metrics(run / "metrics.json")["within_gene_spearman"] == pytest.approx(
        expected["within_gene_spearman"]
    )


@pytest.mark.slow
def test_rescore_of_a_trained_run_rewrites_nothing(tmp_path):
    """metrics.json as rule train writes it is what rescore computes from the run's
    predictions.parquet, bit for bit, so the file is left as it is (its mtime too: the
    report jobs reading it do not rerun); targets with more digits than float32 holds."""
    from helpers.training import TINY_CONFIG, TISSUES, make_dataset
    from isoflow import commands
    from isoflow.dataset import write_dataset
    from isoflow.train import run_experiment

    (tmp_path / "data").mkdir()
    dataset, fasta = make_dataset(tmp_path / "data")
    frame = pd.read_parquet(dataset)
    digits = frame[TISSUES].to_numpy(dtype=np.float64) + 1e-9 * np.arange(len(frame))[:, None]
    frame[TISSUES] = digits  # targets with digits past float32's
    write_dataset(frame, TISSUES, fasta, dataset)
    run = tmp_path / "run"
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "max_epochs": 1}}
    run_experiment(config, {"modalities": ["protein"]}, dataset, run)
    before = (run / "metrics.json").read_text()
    os.utime(run / "metrics.json", ns=(1, 1))
    assert commands.main(["rescore", str(run)]) == 0
    assert (run / "metrics.json").read_text() == before
    assert (run / "metrics.json").stat().st_mtime_ns == 1


def test_rescore_refuses_what_is_not_a_predictions_table(tmp_path, capsys):
    import pandas as pd

    from isoflow import commands

    run, _ = _run_dir(tmp_path)
    before = (run / "metrics.json").read_text()
    table = pd.read_parquet(run / "predictions.parquet")
    pd.concat([table, table.iloc[:1]]).to_parquet(run / "predictions.parquet")
    assert commands.main(["rescore", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("not one row per transcript and tissue: not a predictions table")
    assert "\n" not in err and (run / "metrics.json").read_text() == before  # untouched
    assert commands.main(["rescore", str(tmp_path / "none")]) == 1
    assert "no predictions to rescore" in capsys.readouterr().err


def test_the_report_and_metrics_json_score_the_same_groups_to_the_bit():
    # one definition (group_rhos) behind metrics.json and the report's per-group table:
    # the same rho for every (gene, tissue), whichever layout the predictions come in
    from isoflow.metrics import group_rhos, predictions_frame, within_gene_groups

    rng = np.random.default_rng(3)
    genes = np.array(["g2", "g1", "g1", "g2", "g3", "g1", "g4", "g4"])
    tissues = ["Lung", "Brain", "Adipose"]
    observed = rng.normal(size=(8, 3)).round(1)
    predicted = rng.normal(size=(8, 3)).astype(np.float32).astype(np.float64)
    predicted[[6, 7], 1] = 0.5  # g4 tied in Brain
    observed[[1, 2, 5], 2] = 1.0  # g1 constant in Adipose: dropped
    rhos, tied = within_gene_groups(genes, observed, predicted)
    frame = pd.DataFrame({"transcript_id": [f"t{i}" for i in range(8)], "gene_id": genes})
    frame[tissues] = observed
    long = predictions_frame(frame, tissues, predicted)
    long["observed"] = observed.reshape(-1)  # float64, as metrics saw them
    long["predicted"] = predicted.reshape(-1)
    table = group_rhos(long, ["gene_id", "tissue"]).reset_index()
    # metrics' order: tissue by tissue in column order, genes sorted within a tissue
    order = table.assign(t=table["tissue"].map(tissues.index)).sort_values(["t", "gene_id"])
    assert len(rhos) == len(table) == 3 * 3 - 1  # g1, g2, g4 (g3 has one isoform)
    assert order["rho"].to_numpy().tobytes() == rhos.tobytes()
    assert tied == int(table["tied"].sum()) == 1


def _broken_predictions(table, case):
    table = table.copy()
    if case == "nan predicted":
        table.loc[3, "predicted"] = np.nan
    elif case == "inf observed":
        table.loc[3, "observed"] = np.inf
    elif case == "two genes":
        table.loc[table.index[table.transcript_id == "T1"][0], "gene_id"] = "B"
    elif case == "empty":
        table = table.iloc[:0]
    elif case == "null transcript":
        table["transcript_id"] = table["transcript_id"].astype(object)
        table.loc[0, "transcript_id"] = None
    elif case == "text values":
        table["observed"] = table["observed"].astype(str)
    return table


RESCORE_REFUSALS = {
    # a NaN/inf was silently left out of its tissue's metrics and of the mean
    "nan predicted": r":T1/Lung: predicted is nan \(1 non-finite",
    "inf observed": r":T1/Lung: observed is inf",
    "two genes": r":T1: under two genes \(A, B\)",
    "empty": r": no rows: nothing to rescore",
    "null transcript": r":row 1: transcript_id is empty",
    "text values": r":observed: not a numeric column",
}


@pytest.mark.parametrize("case", list(RESCORE_REFUSALS))
def test_rescore_refuses_bad_values_in_one_line_and_leaves_metrics_json(case, tmp_path, capsys):
    import re

    from isoflow import commands

    run, _ = _run_dir(tmp_path)
    before = (run / "metrics.json").read_text()
    table = pd.read_parquet(run / "predictions.parquet")
    _broken_predictions(table, case).to_parquet(run / "predictions.parquet")
    assert commands.main(["rescore", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(RESCORE_REFUSALS[case], err), err
    assert (run / "metrics.json").read_text() == before


def test_rescore_turns_unreadable_files_into_one_line(tmp_path, capsys):
    from isoflow import commands

    run, _ = _run_dir(tmp_path)
    (run / "metrics.json").write_text("{not json")
    assert commands.main(["rescore", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "metrics.json: unreadable" in err and "remove it" in err
    (run / "metrics.json").write_text("[1, 2]")
    assert commands.main(["rescore", str(run)]) == 1
    assert "not a metrics mapping" in capsys.readouterr().err
    (run / "predictions.parquet").write_bytes(b"PAR1 this is not parquet")
    assert commands.main(["rescore", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "predictions.parquet: not a readable Parquet table" in err


def test_rescore_checks_every_run_before_rewriting_any(tmp_path, capsys):
    from isoflow import commands

    good, _ = _run_dir(tmp_path / "a")
    bad, _ = _run_dir(tmp_path / "b")
    before = (good / "metrics.json").read_text()
    table = pd.read_parquet(bad / "predictions.parquet")
    _broken_predictions(table, "nan predicted").to_parquet(bad / "predictions.parquet")
    assert commands.main(["rescore", str(good), str(bad)]) == 1
    assert "predicted is nan" in capsys.readouterr().err
    assert (good / "metrics.json").read_text() == before
