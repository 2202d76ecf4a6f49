"""Scoring constructs with a bundle or an ensemble (isoflow.score, `isoflow score`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.bundles import tiny_bundles
from helpers.commands import command_output
from helpers.training import TISSUES
from isoflow.constructs import Construct, construct_inputs, write_constructs_tsv
from isoflow.errors import InputError
from isoflow.score import (
    SCORE_COLUMNS,
    SPECIFICITY_COLUMNS,
    Scores,
    check_bundles,
    check_targets,
    output_paths,
    score_constructs,
    specificity,
    write_scores,
)

WINDOW = 512


def _seq(rng, n, letters="ACGT"):
    return "".join(rng.choice(list(letters), n))


def _cds(rng, codons=12):
    sense = ["AAA", "GCT", "GAT", "TTC", "CGT", "GGC", "CAG", "TGG"]
    return "ATG" + "".join(rng.choice(sense, codons)) + "TAA"


def make_constructs(seed=0):
    """Three cassettes: two inside a 512-bp window, one whose promoter runs past it."""
    rng = np.random.default_rng(seed)
    out = []
    for i, promoter_len in enumerate((100, 120, 400)):
        parts = {
            "promoter": _seq(rng, promoter_len),
            "utr5": _seq(rng, 30),
            "cds": _cds(rng),
            "utr3": _seq(rng, 60),
        }
        out.append(Construct(f"c{i}", parts, source=f"test:{i + 2}"))
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Two tiny runs (seeds 0 and 1) of one dataset, exported as bundles."""
    return tiny_bundles(tmp_path_factory.mktemp("score"), window=WINDOW, seeds=(0, 1))["paths"]


def _edited(bundle, dest, edit):
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    edit(manifest)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


# ---------------------------------------------------------------- ensemble (tiny bundles)


@pytest.mark.slow
def test_ensemble_mean_and_sd_are_numpys_over_single_bundle_predictions(bundles):
    from isoflow.bundle import load_model

    constructs = make_constructs()
    scores = score_constructs(constructs, bundles, target_tissues=["Liver"], device="cpu")
    inputs = [construct_inputs(c, window=WINDOW) for c in constructs]
    each = np.stack([load_model(b, device="cpu").predict(inputs) for b in bundles])
    assert each.shape == (2, 3, len(TISSUES))
    assert not np.allclose(each[0], each[1])  # two seeds: a spread to measure
    np.testing.assert_allclose(scores.predictions, each, rtol=0, atol=1e-6)

    table = scores.table
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert len(table) == 3 * len(TISSUES)
    wide_mean = table.pivot(index="construct_id", columns="tissue", values="mean")
    wide_sd = table.pivot(index="construct_id", columns="tissue", values="sd")
    ids = [c.id for c in constructs]
    np.testing.assert_allclose(
        wide_mean.loc[ids, TISSUES].to_numpy(), each.mean(axis=0), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        wide_sd.loc[ids, TISSUES].to_numpy(), each.std(axis=0, ddof=1), rtol=1e-5, atol=1e-6
    )
    assert set(table["n_models"]) == {2}
    assert table.loc[table["tissue"] == "Liver", "target"].all()
    assert not table.loc[table["tissue"] != "Liver", "target"].any()

    # the cassette whose promoter runs past the window carries its warning, the others none
    notes = table.drop_duplicates("construct_id").set_index("construct_id")["warnings"]
    assert "DNA window" not in notes["c0"] and "DNA window" not in notes["c1"]
    assert "runs past the 512-nt DNA window" in notes["c2"]

    spec = scores.specificity
    assert list(spec.columns) == list(SPECIFICITY_COLUMNS)
    per_model = each[..., 0] - each[..., 1:].mean(axis=-1)
    np.testing.assert_allclose(spec["specificity"], per_model.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(spec["specificity_sd"], per_model.std(axis=0, ddof=1), atol=1e-6)


@pytest.mark.slow
def test_constructs_differing_only_past_the_rna_cut_say_so(bundles):
    """Score was silent when the bundles' RNA encoder cut the RNA: constructs differing only
    past the cut (and outside the DNA window) got the same scores with no warning."""
    from isoflow.score import read_cut

    rng = np.random.default_rng(5)
    parts = {"promoter": _seq(rng, 100), "utr5": _seq(rng, 20), "cds": _cds(rng, 4)}
    tail = WINDOW // 2 + 40  # past the DNA window (TSS at its centre) and the RNA cut
    a = Construct("a", {**parts, "utr3": _seq(rng, tail) + "A" * 30}, source="test:a")
    b = Construct("b", {**parts, "utr3": a.parts["utr3"][:-30] + "C" * 30}, source="test:b")
    short = Construct("short", {**parts, "utr3": _seq(rng, 20)}, source="test:short")
    manifests = check_bundles(bundles)
    letters, mode = read_cut(manifests[0], "rna")
    assert mode == "keep_5prime" and len(short.rna) <= letters < len(a.rna) - 30
    scores = score_constructs([a, b, short], bundles, device="cpu")
    np.testing.assert_array_equal(scores.predictions[:, 0], scores.predictions[:, 1])
    said = (
        f"its RNA is {len(a.rna):,} nt; every bundle reads only its 5' {letters:,} nt (the RNA "
        "encoder's cut), so a change outside them does not change the score"
    )
    for cid in ("a", "b"):
        assert f"construct {cid!r}: {said}" in scores.warnings[cid]
    assert not any("encoder's cut" in w for w in scores.warnings.get("short", []))
    assert not any("protein" in w for w in scores.warnings["a"])  # 6 residues: not cut


def _cut_manifest(run, modalities=("dna", "rna", "protein"), nt=1000, mode="keep_5prime", aa=1000):
    """A manifest as :func:`isoflow.score.read_cut` reads it without encoder specs."""
    return {
        "run": run,
        "modalities": list(modalities),
        "rna": {"max_nt": nt, "truncate": mode},
        "protein": {"max_aa": aa},
    }


def test_cut_warnings_name_the_kept_end_and_only_the_bundles_that_cut():
    """Fast cases of the cut warning the test above sees end to end: an RNA exactly at the
    cut is read whole; a protein past its cut is said to lose its C-terminal end; a
    keep_3prime bundle keeps the 3' end; when only some bundles cut, those are named (not
    'every bundle'); a bundle without RNA cuts no RNA whatever its manifest's rna.max_nt."""
    from types import SimpleNamespace

    from isoflow.score import cut_warnings

    placed = SimpleNamespace(rna="A" * 100, protein="M" * 11)
    tail = "(the {} encoder's cut), so a change outside them does not change the score"
    assert cut_warnings("x", placed, [_cut_manifest("a", nt=100, aa=10)]) == [
        "construct 'x': its protein is 11 aa; bundle 'a' reads only its N-terminal 10 aa "
        + tail.format("protein")
    ]
    three_prime = {"nt": 60, "mode": "keep_3prime"}
    manifests = [
        _cut_manifest("a", **three_prime),
        _cut_manifest("b", **three_prime),
        _cut_manifest("c", nt=100),
        _cut_manifest("d", modalities=("dna", "protein"), **three_prime),
    ]
    assert cut_warnings("x", placed, manifests) == [
        "construct 'x': its RNA is 100 nt; bundles 'a', 'b' read only its 3' 60 nt "
        + tail.format("RNA")
    ]
    assert cut_warnings("x", placed, manifests[:2]) == [
        "construct 'x': its RNA is 100 nt; every bundle reads only its 3' 60 nt "
        + tail.format("RNA")
    ]


@pytest.mark.parametrize(
    "modalities",
    [[["rna"], ["rna"]], [["dna", "rna"], ["dna", "rna"]], [["dna", "rna"], ["rna"]]],
    ids=["rna", "dna-rna", "mixed"],
)
def test_the_dna_window_warning_only_where_a_bundle_reads_dna(
    bundles, modalities, monkeypatch, caplog
):
    """A cassette past the DNA window was said to be cut to it also for bundles that read
    no DNA (RNA only): nothing of their score depends on the window. An ensemble with one
    bundle that reads DNA keeps the warning: that bundle's score depends on the window."""
    import logging

    import isoflow.bundle
    import isoflow.score

    class Loaded(Exception):
        pass

    manifests = [
        {**m, "modalities": each}
        for m, each in zip(check_bundles(bundles), modalities, strict=True)
    ]
    monkeypatch.setattr(isoflow.score, "check_bundles", lambda paths: manifests)
    monkeypatch.setattr(
        isoflow.bundle, "load_model", lambda *a, **k: (_ for _ in ()).throw(Loaded())
    )
    rng = np.random.default_rng(6)
    parts = {"promoter": _seq(rng, WINDOW), "utr5": _seq(rng, 20), "cds": _cds(rng, 4)}
    long = Construct("long", {**parts, "utr3": _seq(rng, 20)}, source="test:long")
    with caplog.at_level(logging.WARNING), pytest.raises(Loaded):  # inputs placed, then load
        score_constructs([long], bundles, device="cpu")
    said = [r.getMessage() for r in caplog.records if "runs past" in r.getMessage()]
    assert len(said) == ("dna" in modalities[0])


def test_fine_tunings_in_other_settings_are_named_as_not_seeds():
    """Two fine-tunings of one table in other modes were taken for seeds of one experiment:
    only the experiment and dataset were compared. The fine-tuning seed is a seed."""
    from isoflow.score import ensemble_differences

    def manifest(mode, seed):
        settings = {"mode": mode, "lr": 0.003, "seed": seed}
        return {
            "experiment": {"aggregator": "cross_attention", "seed": 0},
            "dataset": {"sha256": "a" * 64},
            "finetune": {"settings": settings, "source": {"sha256": "b" * 64}},
        }

    assert ensemble_differences(["f0", "f1"], [manifest("frozen", 0), manifest("frozen", 1)]) == []
    assert ensemble_differences(["f0", "f1"], [manifest("frozen", 0), manifest("lora", 0)]) == [
        "finetune.mode: frozen (f0) / lora (f1)"
    ]


@pytest.mark.slow
def test_an_ensemble_of_other_experiments_is_a_warning_naming_what_differs(
    bundles, tmp_path, caplog
):
    """Bundles of other experiments (aggregator, modalities, dataset) were averaged silently,
    and their sd read as a spread over seeds."""
    import logging

    def other(manifest):
        manifest["experiment"]["aggregator"] = "concat"
        manifest["dataset"]["sha256"] = "f" * 64

    edited = _edited(bundles[1], tmp_path / "other", other)
    with caplog.at_level(logging.WARNING, logger="isoflow.score"):
        check_bundles(bundles)  # the seeds of one experiment: nothing to say
        assert not caplog.records
        check_bundles([bundles[0], edited])
    (record,) = caplog.records
    said = record.getMessage()
    assert said.startswith("the 2 bundles are not the seeds of one experiment: they differ in ")
    assert f"aggregator: cross_attention ({bundles[0]}) / concat ({edited})" in said
    assert f"dataset: {check_bundles(bundles)[0]['dataset']['sha256'][:12]} ({bundles[0]})" in said
    assert f"/ ffffffffffff ({edited})" in said
    assert "modalities:" not in said and "seed:" not in said


def _finetuned(table, sha256):
    """A manifest edit: the record isoflow finetune writes, on ``table`` of ``sha256``."""

    def edit(manifest):
        manifest["finetune"] = {"source": {"table": table, "sha256": sha256, "demo": False}}

    return edit


@pytest.mark.slow
def test_bundles_predicting_in_other_units_are_one_line_errors(bundles, tmp_path, caplog):
    """A fine-tuned bundle (its columns named as the tissues) with a GTEx one, or two
    fine-tuned on other tables, were averaged in two units; now one line naming both, for
    score's ensemble and design's --model / --holdout-model alike. Seeds fine-tuned on one
    table are scored together, with no warning (they are one experiment's seeds)."""
    import logging

    from isoflow.constraints import Constraints
    from isoflow.design import Objective, design

    a, b, c = "a" * 64, "b" * 64, "c" * 64
    tuned0 = _edited(bundles[0], tmp_path / "t0", _finetuned("m.tsv", a))
    tuned1 = _edited(bundles[1], tmp_path / "t1", _finetuned("m.tsv", a))
    other = _edited(bundles[1], tmp_path / "o1", _finetuned("other.tsv", b))
    unrecorded = _edited(bundles[1], tmp_path / "u1", _finetuned("x.tsv", c))
    manifest = json.loads((unrecorded / "manifest.json").read_text())
    manifest["finetune"]["source"] = {"tissues": ["Liver"], "from": "same name"}
    (unrecorded / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="isoflow.score"):
        assert len(check_bundles([tuned0, tuned1])) == 2
    assert not caplog.records
    tpm = "predicts log(1 + TPM) (not fine-tuned)"
    cases = [
        (
            [bundles[0], tuned1],
            f"{tuned1 / 'manifest.json'}:finetune.source: predicts the "
            f"units of m.tsv (sha256 aaaaaaaaaaaa), the table it was fine-tuned on, but "
            f"{bundles[0]} {tpm}: ",
        ),
        (
            [tuned0, bundles[1]],
            f"{bundles[1] / 'manifest.json'}: {tpm}, but {tuned0} predicts "
            "the units of m.tsv (sha256 aaaaaaaaaaaa)",
        ),
        (
            [tuned0, other],
            f"{other / 'manifest.json'}:finetune.source: predicts the units of "
            f"other.tsv (sha256 bbbbbbbbbbbb), the table it was fine-tuned on, but {tuned0} "
            "predicts the units of m.tsv",
        ),
        (
            [tuned0, unrecorded],
            f"{unrecorded / 'manifest.json'}:finetune.source: no measurement table recorded",
        ),
    ]
    for given, expected in cases:
        with pytest.raises(InputError) as err:
            check_bundles(given)
        assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    start = make_constructs()[0]
    for models, holdout in (([tuned0], [bundles[1]]), ([bundles[0], tuned1], [])):
        with pytest.raises(InputError, match="averaged and compared in one unit"):
            design(
                start,
                models,
                objective=Objective(("Liver",)),
                constraints=Constraints(polya_present=False),
                holdout=holdout,
            )


@pytest.mark.slow
def test_mismatched_bundles_are_one_line_errors(bundles, tmp_path):
    def other_tissues(m):
        m["tissues"] = list(reversed(m["tissues"]))

    def other_window(m):
        m["dna"]["window"] = 1024

    cases = [
        (_edited(bundles[1], tmp_path / "t", other_tissues), "tissues in another order"),
        (_edited(bundles[1], tmp_path / "w", other_window), "1024 bp"),
    ]
    for other, expected in cases:
        with pytest.raises(InputError) as err:
            score_constructs(make_constructs(), [bundles[0], other], device="cpu")
        text = str(err.value)
        assert "\n" not in text and expected in text and str(other) in text
    with pytest.raises(InputError, match="given twice"):
        check_bundles([bundles[0], bundles[0]])

    def fewer(m):
        m["tissues"] = m["tissues"][:2]

    with pytest.raises(InputError, match=r"other tissues \(no \['Testis'\]\)"):
        check_bundles([bundles[0], _edited(bundles[1], tmp_path / "f", fewer)])


@pytest.mark.slow
def test_cli_scores_a_tsv_end_to_end(bundles, tmp_path):
    from isoflow import commands

    tsv = tmp_path / "constructs.tsv"
    write_constructs_tsv(make_constructs(), tsv)
    prefix = tmp_path / "out" / "demo"
    code = commands.main(
        [
            "score",
            "--model",
            str(bundles[0]),
            "--model",
            str(bundles[1]),
            "--constructs",
            str(tsv),
            "--target-tissue",
            "Brain",
            "--out",
            str(prefix),
            "--device",
            "cpu",
            "--figure-format",
            "png",
        ]
    )
    assert code == 0
    paths = output_paths(prefix, specificity=True, figure_format="png")
    for path in paths.values():
        assert (tmp_path / "out" / path.rsplit("/", 1)[1]).stat().st_size > 0
    table = pd.read_csv(paths["tsv"], sep="\t", keep_default_na=False)
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert len(table) == 3 * len(TISSUES) and set(table["n_models"]) == {2}
    back = pd.read_parquet(paths["parquet"])
    np.testing.assert_allclose(back["mean"], table["mean"].astype(float), rtol=1e-5)
    import pyarrow.parquet as pq

    meta = pq.read_schema(paths["parquet"]).metadata
    assert [m["run"] for m in json.loads(meta[b"isoflow.models"])] == [
        "dna+rna+protein_enformer_cross_attention_s0",
        "dna+rna+protein_enformer_cross_attention_s1",
    ]
    assert json.loads(meta[b"isoflow.target_tissues"]) == ["Brain"]
    spec = pd.read_csv(paths["specificity"], sep="\t", keep_default_na=False)
    assert sorted(spec["rank"]) == [1, 2, 3] and set(spec["targets"]) == {"Brain"}

    # a target that is no tissue: one line, exit 1
    bad = commands.main(
        ["score", "--model", str(bundles[0]), "--constructs", str(tsv)]
        + ["--target-tissue", "brain", "--out", str(prefix), "--device", "cpu"]
    )
    assert bad == 1


# ---------------------------------------------------------------- no model needed


def test_specificity_is_target_mean_minus_other_mean_per_model():
    rng = np.random.default_rng(1)
    predictions = rng.normal(size=(3, 4, 5)).astype(np.float32)
    tissues = ["a", "b", "c", "d", "e"]
    s, target, other = specificity(predictions, tissues, ["b", "d"])
    np.testing.assert_allclose(target, predictions[..., [1, 3]].mean(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(other, predictions[..., [0, 2, 4]].mean(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(s, target - other)

    scores = Scores(
        constructs=["w", "x", "y", "z"],
        tissues=tissues,
        models=[{"run": f"r{k}", "path": f"m{k}"} for k in range(3)],
        predictions=predictions,
        targets=["b", "d"],
    )
    spec = scores.specificity
    np.testing.assert_allclose(spec["specificity"], s.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(spec["specificity_sd"], s.std(axis=0, ddof=1), rtol=1e-6)
    expected_rank = np.empty(4, dtype=int)
    expected_rank[np.argsort(-s.mean(axis=0))] = [1, 2, 3, 4]
    assert spec["rank"].tolist() == expected_rank.tolist()

    # a planted specific construct ranks first
    planted = np.zeros((2, 2, 3), dtype=np.float32)
    planted[:, 1, 0] = 2.0  # construct "hi" high in tissue "a" only, under both models
    one = Scores(["lo", "hi"], ["a", "b", "c"], [{}, {}], planted, targets=["a"])
    assert one.specificity.set_index("construct_id").loc["hi", "rank"] == 1
    assert one.specificity.set_index("construct_id").loc["hi", "specificity"] == 2.0


def test_one_model_has_no_sd_and_no_targets_no_specificity(tmp_path):
    predictions = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    scores = Scores(["p", "q"], ["a", "b", "c"], [{"run": "r", "path": "m"}], predictions)
    assert scores.table["sd"].isna().all() and set(scores.table["n_models"]) == {1}
    assert scores.specificity is None
    paths = output_paths(tmp_path / "one", specificity=False)
    write_scores(scores, {**paths, "html": tmp_path / "one.html"})
    back = pd.read_csv(paths["tsv"], sep="\t", keep_default_na=False)
    assert (back["sd"] == "").all()
    assert Path(paths["figure"]).read_text().startswith("<?xml")
    assert "Construct scores" in (tmp_path / "one.html").read_text()
    with pytest.raises(ValueError, match="target tissues"):
        write_scores(scores, {"specificity": tmp_path / "s.tsv"})


def test_the_heatmap_draws_ids_tissues_and_runs_with_dollars_as_written(tmp_path):
    """A pair of ``$`` in a construct id was mathtext: ``bad$\\frac$x`` a ValueError after
    all the scoring (the outputs held back), ``price$5 and $6`` drawn as math, unlike the
    tables. Tissues (a fine-tuned bundle's are a table's columns) and run names too."""
    import html

    from isoflow.score import plot_scores

    ids = ["bad$\\frac$x", "price$5 and $6"]
    predictions = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    models = [{"run": "r$1$", "path": "m1"}, {"run": "r2", "path": "m2"}]
    tissues = ["Liver", "Lu$ng$", "$x$"]
    for runs in (models, models[:1]):
        scores = Scores(ids, tissues, runs, predictions[: len(runs)], targets=["$x$"])
        plot_scores(scores, tmp_path / "h.svg")
        svg = (tmp_path / "h.svg").read_text()
        assert "Oblique" not in svg  # mathtext sets the letters between two $ in italics
        texts = [*ids, "Lu$ng$", "$x$ *", "Constructs scored by r$1$; * target: $x$"]
        for text in texts if len(runs) == 1 else ids:
            assert f"<!-- {html.escape(text, quote=False)} -->" in svg, text


def test_target_tissues_are_checked():
    tissues = ["Liver", "Brain", "Testis"]
    assert check_targets(["Brain"], tissues) == ["Brain"]
    with pytest.raises(InputError, match=r"'brain' is not a tissue.*did you mean 'Brain'"):
        check_targets(["brain"], tissues)
    cells = ["cell_A", "cell_B", "cell_C"]  # the case-sensitive match was a tie: 'cell_C'
    with pytest.raises(InputError, match=r"'cell_a' is not a tissue.*did you mean 'cell_A'"):
        check_targets(["cell_a"], cells)
    with pytest.raises(InputError, match="named twice"):
        check_targets(["Brain", "Brain"], tissues)
    with pytest.raises(InputError, match="every tissue is a target"):
        check_targets(tissues, tissues)


def test_score_help_works_without_torch():
    out, torch_loaded = command_output(["score", "--help"])
    assert not torch_loaded
    assert "usage: isoflow score" in out and "--target-tissue" in out


def test_demo_cassettes_keep_their_warnings_and_ids(tmp_path):
    from isoflow.demo import write_demo_constructs
    from isoflow.score import read_with_warnings

    path = write_demo_constructs(tmp_path / "c.tsv")
    constructs, warnings = read_with_warnings(path, aav=True, aav_limit=2000)
    assert len(constructs) == 8
    # each demo cassette (1,000 + 120 + 603 + 600 nt) is above a 2,000-nt limit: one each
    assert sorted(warnings) == sorted(c.id for c in constructs)
    assert all(len(w) == 1 and "AAV packaging limit" in w[0] for w in warnings.values())


def test_rule_layout_follows_the_constructs_config():
    from isoflow.workflow import construct_models, construct_outputs, score_inputs

    runs = {"a_s0": {}, "a_s1": {}}
    assert construct_outputs({}) == {} and construct_outputs({"constructs": {}}) == {}
    config = {"models": {"export": ["a_s1"]}, "constructs": {"table": "c.tsv"}}
    assert construct_models(config, runs) == ["a_s1"]  # default: models.export
    outputs = construct_outputs(config)
    assert "specificity" not in outputs and outputs["tsv"] == "results/constructs/scores.tsv"
    config["constructs"] |= {"models": ["a_s0", "a_s1"], "target_tissues": ["Liver"]}
    config["constructs"]["background"] = "bg.fa"
    assert construct_outputs(config)["specificity"] == "results/constructs/specificity.tsv"
    assert score_inputs(config, runs) == {
        "constructs": "c.tsv",
        "models": ["results/models/a_s0", "results/models/a_s1"],
        "background": "bg.fa",
    }
    with pytest.raises(InputError, match="constructs.models: 'b_s0' is not a configured run"):
        construct_models({"constructs": {"table": "c.tsv", "models": ["b_s0"]}}, runs)
    with pytest.raises(InputError, match="no model scores it"):
        construct_models({"constructs": {"table": "c.tsv"}}, runs)


@pytest.mark.slow
def test_a_copied_bundle_is_not_a_second_ensemble_member(bundles, tmp_path):
    # `--model M0 --model M0copy` gave sd 0 and n_models 2
    copy = shutil.copytree(bundles[0], tmp_path / "copy")
    with pytest.raises(InputError) as err:
        check_bundles([bundles[0], bundles[1], copy])
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{copy}: the same weights as {bundles[0]}")
    assert len(check_bundles(bundles)) == 2


@pytest.mark.slow
def test_rescoring_a_prefix_leaves_no_earlier_outputs_beside_the_new(bundles, tmp_path):
    # without --target-tissue the old .specificity.tsv stayed; with png the old .svg
    from isoflow import commands

    tsv = tmp_path / "constructs.tsv"
    write_constructs_tsv(make_constructs(), tsv)
    prefix = tmp_path / "out" / "s"
    argv = ["score", "--model", str(bundles[0]), "--constructs", str(tsv), "--out", str(prefix)]
    argv += ["--device", "cpu"]
    assert commands.main([*argv, "--target-tissue", "Brain"]) == 0
    assert (tmp_path / "out" / "s.specificity.tsv").is_file()
    (tmp_path / "out" / "s.notes.txt").write_text("mine")  # not a name score writes
    assert commands.main([*argv, "--figure-format", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "s.heatmap.png",
        "s.notes.txt",
        "s.scores.parquet",
        "s.scores.tsv",
    ]


@pytest.mark.slow
def test_a_short_background_names_the_fasta_not_a_construct(bundles, tmp_path):
    short = tmp_path / "bg.fa"
    with pytest.raises(InputError) as err:
        score_constructs(
            make_constructs(),
            bundles,
            background="ACGT" * 10,
            background_path=short,
            device="cpu",
        )
    assert str(err.value).startswith(f"{short}: the background is 40 nt, shorter than the model")


@pytest.mark.slow
def test_a_bundle_without_digests_is_refused_before_any_work(bundles, tmp_path):
    def old(m):
        m.pop("digests")

    with pytest.raises(InputError, match="digests: missing.*export it again"):
        check_bundles([bundles[0], _edited(bundles[1], tmp_path / "old", old)])


# ---------------------------------------------------------------- a rerun interrupted


def _rerun_setup(tmp_path):
    tsv = tmp_path / "constructs.tsv"
    write_constructs_tsv(make_constructs(), tsv)
    out = tmp_path / "out"

    def argv(model, *extra):
        model = str(tmp_path / model)
        return ["--model", model, "--constructs", str(tsv), "--out", str(out / "s"), *extra]

    return out, argv


def test_an_error_while_writing_leaves_the_earlier_outputs_whole(tmp_path, monkeypatch):
    """The heat map failing on a rerun left the new tables beside the earlier run's heat
    map and specificity table, as if one result (found by a review)."""
    from helpers.interrupted import install, snapshot
    from isoflow import commands

    install("score", monkeypatch.setattr)
    out, argv = _rerun_setup(tmp_path)
    assert commands.main(["score", *argv("m1", "--target-tissue", "Brain")]) == 0
    earlier = snapshot(out)
    assert sorted(earlier) == [
        "s.heatmap.svg",
        "s.scores.parquet",
        "s.scores.tsv",
        "s.specificity.tsv",
    ]

    def broken(*args, **kwargs):
        raise RuntimeError("no figure")

    with monkeypatch.context() as m:
        m.setattr("isoflow.score.plot_scores", broken)
        with pytest.raises(RuntimeError, match="no figure"):
            commands.main(["score", *argv("m2", "--figure-format", "png")])
    assert snapshot(out) == earlier
    assert commands.main(["score", *argv("m2", "--figure-format", "png")]) == 0
    now = snapshot(out)
    assert sorted(now) == ["s.heatmap.png", "s.scores.parquet", "s.scores.tsv"]
    assert now["s.scores.tsv"] != earlier["s.scores.tsv"]


def test_a_rerun_killed_while_writing_leaves_the_earlier_outputs_whole(tmp_path, monkeypatch):
    """The review's case: a rerun with another model killed at the heat map left new
    .scores.tsv/.parquet/.specificity.tsv beside the first run's .heatmap.svg."""
    from helpers.interrupted import install, run_killed, snapshot
    from isoflow import commands

    install("score", monkeypatch.setattr)
    out, argv = _rerun_setup(tmp_path)
    targets = ["--target-tissue", "Brain"]
    assert commands.main(["score", *argv("m1", *targets)]) == 0
    earlier = snapshot(out)
    run_killed("score", argv("m2", *targets), kill="isoflow.score:plot_scores")
    left = snapshot(out)
    assert {k: v for k, v in left.items() if not k.startswith(".")} == earlier
    assert ".s.score.partial/" in left  # what the kill left: the next run clears it
    assert commands.main(["score", *argv("m2", *targets)]) == 0
    now = snapshot(out)
    assert sorted(now) == sorted(earlier)
    assert all(now[name] != earlier[name] for name in now), "every file of the new run"


@pytest.mark.slow
def test_a_finetuned_bundles_scores_are_labelled_in_its_tables_units(bundles, tmp_path):
    """A fine-tuned bundle predicts its measurement table's columns in the table's units:
    the heat map (title, specificity axis), the report table's note and the Parquet's
    metadata said log(1 + TPM); they name the table's units (bundle.output_units), a GTEx
    bundle's still log(1 + TPM)."""
    from html import unescape

    import pyarrow.parquet as pq

    from helpers.bundles import as_finetuned
    from isoflow.score import score_file

    tuned = as_finetuned(bundles[0], tmp_path / "tuned", table="lab.tsv")
    table = tmp_path / "c.tsv"
    write_constructs_tsv(make_constructs()[:2], table)
    for bundle, units in ((tuned, "the table's units (lab.tsv)"), (bundles[0], "log(1 + TPM)")):
        prefix = tmp_path / bundle.name
        paths = output_paths(prefix, specificity=True)
        paths["html"] = f"{prefix}.html"
        score_file(table, [bundle], paths, target_tissues=["Liver"], device="cpu")
        svg = Path(paths["figure"]).read_text()
        # the heat map's title and the specificity axis
        assert f"predicted, {units}" in svg and svg.count(units) == 2
        html = unescape(Path(paths["html"]).read_text())
        assert f"Predictions in {units}" in html
        schema = pq.read_schema(paths["parquet"])
        assert json.loads(schema.metadata[b"isoflow.units"]) == units
        if bundle == tuned:
            assert "TPM" not in svg and "TPM" not in html
