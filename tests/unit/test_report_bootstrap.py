"""The report's paired bootstrap over test genes (isoflow.report.bootstrap) and the
intervals and differences it gives the tables across runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.report_inputs import TISSUES, build_experiments, write_baseline, write_run
from isoflow.errors import InputError
from isoflow.experiments import expand_experiments
from isoflow.metrics import evaluate
from isoflow.report import bootstrap, build, tables

LABELS = bootstrap.LABELS


def _metrics_values(metrics: dict) -> dict[str, float]:
    return {
        "R²": metrics["mean"]["r2"],
        "Spearman": metrics["mean"]["spearman"],
        "Pearson": metrics["mean"]["pearson"],
        "within-gene Spearman": metrics["within_gene_spearman"],
    }


def _tied_frame(seed: int = 0) -> pd.DataFrame:
    """Predictions with ties in both columns and one tissue whose predictions all tie."""
    rng = np.random.default_rng(seed)
    genes = np.repeat([f"G{g}" for g in range(12)], [1, 2, 3] * 4)
    n = len(genes)
    observed = np.round(rng.gamma(2.0, 1.0, size=(n, len(TISSUES))), 0)  # many ties, zeros
    predicted = np.round(observed + rng.normal(size=observed.shape), 1)
    predicted[:, 1] = 0.5  # one tissue tied: scores 0
    return pd.DataFrame(
        {
            "transcript_id": np.repeat([f"T{i:03d}" for i in range(n)], len(TISSUES)),
            "gene_id": np.repeat(genes, len(TISSUES)),
            "tissue": np.tile(TISSUES, n),
            # float32, as predictions.parquet stores them (metrics.evaluate's precision)
            "observed": observed.ravel().astype(np.float32),
            "predicted": predicted.ravel().astype(np.float32),
        }
    )


def _evaluate(frame: pd.DataFrame) -> dict[str, float]:
    obs = frame.pivot(index="transcript_id", columns="tissue", values="observed")
    pred = frame.pivot(index="transcript_id", columns="tissue", values="predicted")
    genes = frame.drop_duplicates("transcript_id").set_index("transcript_id")["gene_id"]
    return _metrics_values(
        evaluate(genes.loc[obs.index], obs.to_numpy(), pred.to_numpy(), list(obs.columns))
    )


def test_a_resample_scores_as_metrics_does_the_expanded_test_set():
    """Weights stand for copies: a resample's metrics are isoflow.metrics' on the test set
    with each drawn gene copied (as a new gene) as often as drawn, ties and all."""
    frame = _tied_frame()
    test = bootstrap.TestSet(frame, "p.parquet")
    predicted = test.predicted(frame, "p.parquet")
    ones = np.ones((1, len(test.genes)), dtype=np.int64)
    counts = test.unit_counts(5, seed=3)
    rhos = bootstrap.gene_rhos(test, frame)
    got = bootstrap.run_resamples(test, [predicted], [rhos], np.vstack([ones, counts]))[0]
    for label, value in _evaluate(frame).items():
        assert got[label][0] == pytest.approx(value, abs=1e-12)
    for b in range(len(counts)):
        copies = []
        for g, gene in enumerate(test.genes):
            for k in range(counts[b, g]):
                part = frame[frame["gene_id"] == gene].copy()
                part["gene_id"] = f"{gene}#{k}"
                part["transcript_id"] = part["transcript_id"] + f"#{k}"
                copies.append(part)
        expected = _evaluate(pd.concat(copies))
        for label, value in expected.items():
            assert got[label][b + 1] == pytest.approx(value, abs=1e-9), (b, label)


def test_no_runs_table_is_held_while_resampling(tmp_path, monkeypatch):
    """Each run's long table is dropped once its (n, T) predictions and per-gene rhos are
    taken: an across-run report job held every run's table while resampling (12 runs of
    20,000 transcripts x 30 tissues, 200 resamples: peak RSS 1,209 MB, 640 MB without)."""
    import gc
    import weakref

    paths = {}
    for run in range(3):
        paths[f"r{run}"] = tmp_path / f"r{run}.parquet"
        _tied_frame(seed=0).assign(predicted=_tied_frame(seed=run)["predicted"]).to_parquet(
            paths[f"r{run}"]
        )
    read, alive = pd.read_parquet, []

    def tracked(*args, **kwargs):
        frame = read(*args, **kwargs)
        alive.append(weakref.ref(frame))
        return frame

    resample = bootstrap.run_resamples

    def check(*args, **kwargs):
        gc.collect()
        assert len(alive) == 3 and [ref() for ref in alive] == [None] * 3
        return resample(*args, **kwargs)

    monkeypatch.setattr(bootstrap.pd, "read_parquet", tracked)
    monkeypatch.setattr(bootstrap, "run_resamples", check)
    got = bootstrap.bootstrap_runs(paths, 20, 0)
    monkeypatch.undo()
    assert got.keys() == paths.keys()
    for run, path in paths.items():  # the same values as from the tables themselves
        frame = pd.read_parquet(path)
        test = bootstrap.TestSet(pd.read_parquet(paths["r0"]), "r0")
        counts = test.unit_counts(20, 0)
        want = bootstrap.run_resamples(
            test, [test.predicted(frame, run)], [bootstrap.gene_rhos(test, frame)], counts
        )[0]
        for label in LABELS:
            np.testing.assert_array_equal(got[run][label], want[label])


def test_each_array_is_sorted_once_whatever_the_chunks(monkeypatch):
    """The sort order of the observed values and of each run's predictions (and its
    inverse) is taken once per array, not once per chunk of resamples: at GENCODE scale
    (9,000 transcripts x 30 tissues, 14 resamples a chunk) a 1,000-resample run is 72 chunks,
    and the sorts were about a third of its time. The values do not depend on the chunking,
    byte for byte."""
    frames = [
        _tied_frame(seed=0).assign(predicted=_tied_frame(seed=s)["predicted"]) for s in (0, 1)
    ]
    test = bootstrap.TestSet(frames[0], "r0")
    predicted = [test.predicted(f, f"r{i}") for i, f in enumerate(frames)]
    rhos = [bootstrap.gene_rhos(test, f) for f in frames]
    counts = test.unit_counts(50, 0)
    whole = bootstrap.run_resamples(test, predicted, rhos, counts)  # one chunk
    sorts = []
    argsort = np.argsort

    def counted(*args, **kwargs):
        sorts.append(1)
        return argsort(*args, **kwargs)

    monkeypatch.setattr(bootstrap, "BLOCK", test.observed.size * 3)  # 3 resamples a chunk
    monkeypatch.setattr(np, "argsort", counted)
    chunked = bootstrap.run_resamples(test, predicted, rhos, counts)
    monkeypatch.undo()
    assert len(sorts) == 2 * (1 + len(predicted))  # order and inverse of 3 arrays, not x 17
    for got, want in zip(chunked, whole, strict=True):
        for label in LABELS:
            assert got[label].tobytes() == want[label].tobytes()


def test_resamples_draw_genes_with_replacement_reproducibly():
    frame = _tied_frame()
    test = bootstrap.TestSet(frame, "p.parquet")
    counts = test.unit_counts(200, seed=0)
    assert counts.shape == (200, len(test.genes))
    assert (counts.sum(axis=1) == len(test.genes)).all()  # as many genes as the test set
    assert (counts == 0).any() and (counts > 1).any()  # with replacement
    assert (test.unit_counts(200, seed=0) == counts).all()
    assert not (test.unit_counts(200, seed=1) == counts).all()


def test_a_run_on_another_test_set_is_refused(tmp_path):
    frame = _tied_frame()
    test = bootstrap.TestSet(frame, "a.parquet")
    other = frame.copy()
    other.loc[3, "observed"] += 1.0
    with pytest.raises(InputError, match=r"b.parquet:T000, .*observed value differs"):
        test.predicted(other, "b.parquet")
    with pytest.raises(InputError, match=r"b.parquet:T000: not scored on the test set"):
        test.predicted(frame[frame["transcript_id"] != "T000"], "b.parquet")
    # as many transcripts, in the same places, with the same values: one of them another
    renamed = frame.replace({"transcript_id": {"T000": "T000x"}})
    with pytest.raises(InputError, match=r"b.parquet:T000: not scored on the test set"):
        test.predicted(renamed, "b.parquet")
    # a tissue named otherwise, in the same place, with the same values
    renamed = frame.replace({"tissue": {TISSUES[-1]: "Thyroid"}})
    with pytest.raises(
        InputError, match=r"b.parquet: tissues \[.*'Thyroid'\] differ from a.parquet"
    ):
        test.predicted(renamed, "b.parquet")
    doubled = pd.concat([frame, frame.iloc[[0]]])
    with pytest.raises(InputError, match=rf"b.parquet:T000: two rows for tissue {TISSUES[0]}$"):
        test.predicted(doubled, "b.parquet")


CONFIG = {
    "experiments": [
        {"modalities": m, "seed": s} for m in (["rna"], ["dna", "rna", "protein"]) for s in (0, 1)
    ]
}


def _write(root: Path, gain: float) -> tuple[dict, list[Path]]:
    """Two modality levels, two seeds each; the second level's runs are the first's
    predictions plus ``gain`` times the truth (0: equal by construction)."""
    experiments = expand_experiments(CONFIG)
    names = list(experiments)
    for i, run in enumerate(names[:2]):
        write_run(root, run, quality=0.3, seed=i)
    for first, run in zip(names[:2], names[2:], strict=True):
        src, out = root / "results/runs" / first, root / "results/runs" / run
        shutil.copytree(src, out)
        frame = pd.read_parquet(out / "predictions.parquet")
        frame["predicted"] = frame["predicted"] + gain * frame["observed"]
        frame.to_parquet(out / "predictions.parquet")
        obs = frame.pivot(index="transcript_id", columns="tissue", values="observed")
        pred = frame.pivot(index="transcript_id", columns="tissue", values="predicted")
        genes = frame.drop_duplicates("transcript_id").set_index("transcript_id")["gene_id"]
        metrics = evaluate(genes.loc[obs.index], obs.to_numpy(), pred.to_numpy(), list(obs.columns))
        (out / "metrics.json").write_text(json.dumps(metrics))
    return experiments, [root / "results/runs" / r / "metrics.json" for r in names]


def _cell(page: str, level: str) -> str:
    row = page.split(f"<td>{level}</td>")[1].split("</tr>")[0]
    return row


def test_equal_settings_are_not_distinguishable_and_a_planted_gain_is(tmp_path):
    experiments, paths = _write(tmp_path / "equal", gain=0.0)
    out = tmp_path / "out"
    build.build_ablation(experiments, paths, "modalities", None, out / "a.html", out / "a.svg")
    page = (out / "a.html").read_text()
    row = _cell(page, "dna+rna+protein")
    # equal by construction: Δ 0 in every resample, [0, 0] covers 0
    assert "vs rna: R² +0.000 [+0.000, +0.000] not distinguishable on this test set" in row
    assert row.count(tables.NOT_DISTINGUISHABLE) == len(LABELS)
    assert "95 % interval over 1,000 paired bootstrap resamples" in page
    assert "The ± sd over seeds covers training noise only" in page

    experiments, paths = _write(tmp_path / "gain", gain=3.0)
    build.build_ablation(experiments, paths, "modalities", None, out / "b.html", out / "b.svg")
    row = _cell((out / "b.html").read_text(), "dna+rna+protein")
    spearman = row.split("; Spearman ")[1].split(";")[0]
    low = float(spearman.split("[")[1].split(",")[0])
    assert low > 0 and tables.NOT_DISTINGUISHABLE not in spearman, spearman


def test_intervals_are_the_seed_mean_percentiles_and_the_same_bytes_each_time(tmp_path):
    experiments = expand_experiments(CONFIG)
    paths = []
    for i, run in enumerate(experiments):
        write_run(tmp_path, run, quality=0.2 + 0.3 * ("protein" in run), seed=i)
        paths.append(tmp_path / "results/runs" / run / "metrics.json")
    baseline = write_baseline(tmp_path)
    base_path = tmp_path / "results/baseline/metrics.json"
    out = tmp_path / "out"

    def make(name: str, seed: int = 0) -> bytes:
        page = build_experiments(
            experiments,
            paths,
            out,
            name,
            baseline_path=base_path,
            bootstrap_resamples=300,
            bootstrap_seed=seed,
        )
        return page.read_bytes()

    first = make("a")
    assert make("b") == first  # same config: the same table, byte for byte
    assert make("c", seed=1) != first
    assert "300 paired bootstrap resamples" in first.decode() and "seed 0" in first.decode()
    # the cell's interval is the 2.5/97.5 percentiles of the seed mean per resample
    runs = [r for r in experiments if r.startswith("rna")]
    predictions = {r: tmp_path / "results/runs" / r / "predictions.parquet" for r in experiments}
    boot = bootstrap.bootstrap_runs(predictions, 300, 0)
    seed_mean = np.mean([boot[r]["Spearman"] for r in runs], axis=0)
    low, high = np.percentile(seed_mean, [2.5, 97.5])
    assert f"[{low:.3f}, {high:.3f}]" in _cell(first.decode(), "rna_enformer_cross_attention")
    assert "Δ vs sequence-free baseline (95% CI)" in first.decode()
    assert baseline["n_test"] == 90


def test_the_bootstrap_config_keys_have_schema_defaults():
    import yaml

    from isoflow.config import SCHEMA

    keys = yaml.safe_load(SCHEMA.read_text())["properties"]["report"]["properties"]
    assert keys["bootstrap_resamples"]["default"] == build.BOOTSTRAP_RESAMPLES == 1000
    assert keys["bootstrap_seed"]["default"] == build.BOOTSTRAP_SEED == 0


def test_the_bars_draw_the_interval_over_test_genes_when_the_table_has_it(tmp_path):
    from matplotlib.container import BarContainer

    from isoflow.report import figures

    experiments, paths = _write(tmp_path, gain=0.0)
    metrics = {p.parent.name: json.loads(p.read_text()) for p in paths}
    predictions = {
        r: p.with_name("predictions.parquet") for r, p in zip(metrics, paths, strict=True)
    }
    boot = bootstrap.bootstrap_runs(predictions, 200, 0)
    table = tables.ablation_table(experiments, metrics, "modalities", boot=boot)
    fig = figures.plot_ablation(table, "modalities")
    ax = fig.axes[0]
    row = table.iloc[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer) and c.errorbar]
    spearman = next(c for c in bars if c.get_label().startswith("Spearman"))
    segment = spearman.errorbar.lines[2][0].get_segments()[0]
    xs = sorted(x for x, _ in segment)
    assert xs == pytest.approx([row["Spearman CI low"], row["Spearman CI high"]])
    assert "95% CI over test genes" in spearman.get_label()


def _write_all(root: Path) -> tuple[dict, list[Path], Path]:
    """Four runs and the baseline of one test set (helpers.report_inputs)."""
    experiments = expand_experiments(CONFIG)
    paths = []
    for i, run in enumerate(experiments):
        write_run(root, run, quality=0.2 + 0.3 * ("protein" in run), seed=i)
        paths.append(root / "results/runs" / run / "metrics.json")
    write_baseline(root)
    return experiments, paths, root / "results/baseline/metrics.json"


def _unstamped(path: Path) -> bytes:
    """A file's bytes, an SVG's without what differs between two saves of one figure:
    matplotlib's date and its random ids of clip paths, markers and hatches (p, m or h and
    10 hex digits), numbered in order of first use instead."""
    data = path.read_bytes()
    if path.suffix != ".svg":
        return data
    data = re.sub(rb"<dc:date>[^<]*</dc:date>", b"", data)
    ids: dict[bytes, bytes] = {}
    return re.sub(
        rb"(?<=[\"#])[hmp][0-9a-f]{10}(?=[\")])",
        lambda m: ids.setdefault(m[0], b"id%d" % len(ids)),
        data,
    )


def test_the_per_run_files_give_the_tables_of_the_bootstrap_in_the_table_byte_for_byte(tmp_path):
    # rule report_bootstrap resamples each run once (bootstrap.write_run); the tables read
    # its files (bootstrap_precomputed) and must come out as when they resampled every run
    experiments, paths, base_path = _write_all(tmp_path)
    for path in [*paths, base_path]:
        bootstrap.write_run(
            path.with_name("predictions.parquet"), path.with_name(bootstrap.BOOTSTRAP_FILE), 300, 1
        )
    out = tmp_path / "out"
    made = {}
    for precomputed in (False, True):
        name = f"p{int(precomputed)}"
        options = dict(
            baseline_path=base_path,
            bootstrap_resamples=300,
            bootstrap_seed=1,
            bootstrap_precomputed=precomputed,
        )
        build_experiments(experiments, paths, out, name, **options)
        build.build_ablation(
            experiments,
            paths,
            "modalities",
            None,
            out / f"{name}a.html",
            out / f"{name}a.svg",
            **options,
        )
        made[precomputed] = {
            p.name[2:]: _unstamped(p) for p in sorted(out.glob(f"{name}*")) if p.is_file()
        }
    assert len(made[True]) == 6 and made[True] == made[False]
    assert "300 paired bootstrap resamples" in made[True]["a.html"].decode()
    assert b"<dc:date>" not in made[True]["a.svg"] and b"#id0" in made[True]["a.svg"]
    # and the values themselves, run by run
    files = {p.parent.name: p.with_name(bootstrap.BOOTSTRAP_FILE) for p in paths}
    read = bootstrap.read_runs(files, 300, 1)
    direct = bootstrap.bootstrap_runs(
        {r: p.with_name("predictions.parquet") for r, p in files.items()}, 300, 1
    )
    for run in files:
        for label in LABELS:
            assert read[run][label].tobytes() == direct[run][label].tobytes()


def test_one_job_ranks_the_observed_values_once_and_writes_each_runs_file(tmp_path, monkeypatch):
    """Rule report_bootstraps (bootstrap.write_runs): the observed values' ranks, the same
    for every run of one test set, are taken once for all its runs (once per run before),
    and each run's file is byte for byte the one write_run makes for it alone; a run of
    another test set (a test gene left out) is resampled with its own test set, as alone."""
    experiments, paths, base_path = _write_all(tmp_path)
    predictions = [p.with_name("predictions.parquet") for p in [*paths, base_path]]
    frame = pd.read_parquet(predictions[0])
    other = tmp_path / "other.parquet"
    frame[frame["gene_id"] != frame["gene_id"].iat[0]].to_parquet(other, index=False)
    predictions.append(other)
    alone = [tmp_path / f"alone{i}.npz" for i in range(len(predictions))]
    together = [tmp_path / f"together{i}.npz" for i in range(len(predictions))]
    for path, out in zip(predictions, alone, strict=True):
        bootstrap.write_run(path, out, 300, 1)
    ranked = []
    centred = bootstrap._centred_ranks

    def counted(ranking, weights):
        ranked.append(ranking)
        return centred(ranking, weights)

    monkeypatch.setattr(bootstrap, "_centred_ranks", counted)
    bootstrap.write_runs(list(zip(predictions, together, strict=True)), 300, 1)
    monkeypatch.undo()
    n, t = bootstrap.TestSet(frame, "r").observed.shape
    assert bootstrap.BLOCK // (n * t) >= 300  # one chunk of resamples: ranks once per array
    # the observed values of the shared test set and of the other one, each run's predictions
    assert len(ranked) == 2 + len(predictions)
    for made, want in zip(together, alone, strict=True):
        assert made.read_bytes() == want.read_bytes(), made.name


@pytest.mark.parametrize("change", ["observed", "tissue", "gene_id"])
def test_a_run_of_another_test_set_in_one_job_gets_its_own_resamples(tmp_path, change):
    """write_runs shares resamples between runs whose test sets are the same bytes; a run
    differing from the one before it only in one observed value, in a tissue's name or in
    its transcripts' genes (transcripts and shape the same) must be resampled and saved with
    its own test set, byte for byte as write_run alone, not filed with the first's."""
    frame = _tied_frame()
    other = frame.copy()
    if change == "observed":
        other.loc[3, "observed"] += 1.0
    elif change == "tissue":  # renamed in place: still the last column once sorted
        other["tissue"] = other["tissue"].replace({max(TISSUES): max(TISSUES) + " (other)"})
    else:
        other["gene_id"] = other["gene_id"].replace({"G0": "G0x"})
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    frame.to_parquet(paths[0], index=False)
    other.to_parquet(paths[1], index=False)
    first, second = (bootstrap.TestSet(pd.read_parquet(p), p) for p in paths)
    assert (first.transcripts == second.transcripts).all()
    assert first.observed.shape == second.observed.shape
    together = [tmp_path / f"together{i}.npz" for i in range(2)]
    alone = [tmp_path / f"alone{i}.npz" for i in range(2)]
    bootstrap.write_runs(list(zip(paths, together, strict=True)), 50, 1)
    for path, out in zip(paths, alone, strict=True):
        bootstrap.write_run(path, out, 50, 1)
    for made, want in zip(together, alone, strict=True):
        assert made.read_bytes() == want.read_bytes(), made.name
    assert together[0].read_bytes() != together[1].read_bytes()


def test_a_per_run_file_of_other_resamples_or_another_test_set_is_refused(tmp_path):
    experiments, paths, _ = _write_all(tmp_path)
    files = {p.parent.name: p.with_name(bootstrap.BOOTSTRAP_FILE) for p in paths}
    for path in paths:
        bootstrap.write_run(path.with_name("predictions.parquet"), files[path.parent.name], 200, 0)
    first, second = list(files)[:2]
    assert set(bootstrap.read_runs(files, 200, 0)) == set(files)
    with pytest.raises(
        InputError, match=r"made with 200 resamples, seed 0, unit gene; .* 300, seed 0, unit gene"
    ):
        bootstrap.read_runs(files, 300, 0)
    with pytest.raises(
        InputError, match=r"made with 200 resamples, seed 0, unit gene; .* 200, seed 1, unit gene"
    ):
        bootstrap.read_runs(files, 200, 1)
    predictions = paths[1].with_name("predictions.parquet")
    frame = pd.read_parquet(predictions)
    changed = {
        # a transcript moved to another gene: other resamples, so not paired
        "gene_id": (
            r"\.npz:ENST000000\.1: gene ENSG00001\.1, ENSG00000\.1 in .*not the same "
            "test genes"
        ),
        "observed": r"\.npz:ENST000000\.1, .*observed value differs",
        "transcript_id": r"\.npz:.*not scored on the test set",
    }
    for column, message in changed.items():
        other = frame.copy()
        if column == "gene_id":
            other.loc[other["transcript_id"] == "ENST000000.1", "gene_id"] = "ENSG00001.1"
        elif column == "observed":
            other.loc[0, "observed"] += 1.0
        else:
            other = other[other["transcript_id"] != "ENST000000.1"]
        other.to_parquet(predictions)
        bootstrap.write_run(predictions, files[second], 200, 0)
        with pytest.raises(InputError, match=message) as raised:
            bootstrap.read_runs(files, 200, 0)
        assert str(files[second]) in str(raised.value)
    # the table says which file, before writing anything
    with pytest.raises(InputError, match="not scored on the test set"):
        build_experiments(
            experiments,
            paths,
            tmp_path,
            "o",
            bootstrap_resamples=200,
            bootstrap_seed=0,
            bootstrap_precomputed=True,
        )
    assert not list(tmp_path.glob("o.*"))


def test_a_missing_per_run_file_is_named(tmp_path):
    experiments, paths, _ = _write_all(tmp_path)
    with pytest.raises(InputError, match=r"bootstrap\.npz: missing: .* reads .*'s bootstrap\.npz"):
        build.build_ablation(
            experiments,
            paths,
            "modalities",
            None,
            tmp_path / "a.html",
            tmp_path / "a.svg",
            bootstrap_precomputed=True,
        )


def _paired_genes(root: Path, n_loci: int = 40) -> tuple[dict[str, Path], Path]:
    """A test set of ``n_loci`` loci, two genes each (TSSs 500 bp apart: one locus under
    split.locus_tss_distance 1,000) whose transcripts' observed and predicted values are
    the same (perfectly correlated), two runs of it, and the annotation the split read."""
    rng = np.random.default_rng(0)
    observed = rng.gamma(2.0, 1.0, size=(n_loci, 2, len(TISSUES)))  # locus, transcript
    runs = {}
    for run in ("r0", "r1"):
        predicted = observed + rng.normal(scale=1.5, size=observed.shape)
        rows = []
        for locus in range(n_loci):
            for twin in range(2):  # the second gene copies the first's values
                gene = f"ENSG{2 * locus + twin:05d}.1"
                for k in range(2):
                    for t, tissue in enumerate(TISSUES):
                        rows.append(
                            (f"ENST{2 * locus + twin:05d}{k}.1", gene, tissue)
                            + (observed[locus, k, t], predicted[locus, k, t])
                        )
        frame = pd.DataFrame(rows, columns=list(bootstrap.PREDICTION_COLUMNS))
        runs[run] = root / run / "predictions.parquet"
        runs[run].parent.mkdir(parents=True)
        frame.to_parquet(runs[run])
    genes = sorted({g for g in frame["gene_id"]})
    tss = [100_000 * (i // 2) + 500 * (i % 2) for i in range(len(genes))]
    annotation = root / "transcripts.parquet"
    pd.DataFrame(
        {
            "gene_id": genes,
            "chrom": "chr1",
            "strand": "+",
            "tss": tss,
            "exon_starts": [[t] for t in tss],
            "exon_ends": [[t + 100] for t in tss],
        }
    ).to_parquet(annotation)
    return runs, annotation


def test_under_the_locus_scheme_a_resample_draws_loci_not_genes(tmp_path):
    """Genes of one locus sit on one side of the locus split and are not independent:
    resampled apart (as genes), two perfectly correlated genes look like two independent
    draws and the interval comes out too narrow. The bootstrap draws the split's loci."""
    runs, annotation = _paired_genes(tmp_path)
    units = bootstrap.split_units(annotation, "locus", 1000)
    test = bootstrap.TestSet(pd.read_parquet(runs["r0"]), runs["r0"], units)
    assert test.unit == "locus" and len(test.units) == 40 and len(test.genes) == 80
    assert (test.unit_counts(10, 0).sum(axis=1) == 40).all()
    # the two genes of a locus drawn together: always the same count
    counts = test.unit_counts(50, 0)[:, test.gene_unit]
    assert (counts[:, 0::2] == counts[:, 1::2]).all()
    by_gene = bootstrap.bootstrap_runs(runs, 1000, 0)
    by_locus = bootstrap.bootstrap_runs(runs, 1000, 0, units)
    for label in ("R²", "Spearman", "Pearson"):
        gene_low, gene_high = bootstrap.interval(bootstrap.pooled(by_gene, list(runs))[label])
        low, high = bootstrap.interval(bootstrap.pooled(by_locus, list(runs))[label])
        assert high - low > 1.2 * (gene_high - gene_low), label  # about sqrt(2) wider
    # the file records the unit; the tables ask for it and the note says it
    outs = [(p, p.with_name(bootstrap.BOOTSTRAP_FILE)) for p in runs.values()]
    bootstrap.write_runs(outs, 200, 0, units)
    files = {run: p.with_name(bootstrap.BOOTSTRAP_FILE) for run, p in runs.items()}
    read = bootstrap.read_runs(files, 200, 0, "locus")
    direct = bootstrap.bootstrap_runs(runs, 200, 0, units)
    assert all(read[r][x].tobytes() == direct[r][x].tobytes() for r in runs for x in LABELS)
    with pytest.raises(
        InputError,
        match=r"r0/bootstrap.npz: made with 200 resamples, seed 0, "
        r"unit locus; the report asks for 200, seed 0, unit gene: rerun",
    ):
        bootstrap.read_runs(files, 200, 0, "gene")
    note = bootstrap.summary({"resamples": 200, "seed": 0, "unit": "locus"})
    assert "resamples of the test loci (the split's unit" in note
    assert "which test loci were drawn" in note


def test_loci_of_one_gene_each_resample_as_genes_did_byte_for_byte(tmp_path):
    """The demo's locus split joins no two genes (700 genes in 700 units): its loci are its
    genes, so its intervals are those of the gene bootstrap, byte for byte."""
    runs, annotation = _paired_genes(tmp_path)
    table = pd.read_parquet(annotation)
    table["tss"] = 100_000 * np.arange(len(table))  # every gene its own locus
    table["exon_starts"] = [[t] for t in table["tss"]]
    table["exon_ends"] = [[t + 100] for t in table["tss"]]
    table.to_parquet(annotation)
    units = bootstrap.split_units(annotation, "locus", 1000)
    assert units.nunique() == len(units) == 80
    by_gene = bootstrap.bootstrap_runs(runs, 300, 0)
    by_locus = bootstrap.bootstrap_runs(runs, 300, 0, units)
    for run in runs:
        for label in LABELS:
            assert by_locus[run][label].tobytes() == by_gene[run][label].tobytes()
    assert bootstrap.split_units(annotation, "gene") is None


def test_a_test_gene_in_no_locus_of_the_annotation_is_refused(tmp_path):
    runs, annotation = _paired_genes(tmp_path)
    units = bootstrap.split_units(annotation, "locus", 1000).drop("ENSG00003")
    with pytest.raises(
        InputError, match=r"r0/predictions.parquet:ENST000030.1: gene ENSG00003.1 is in no locus"
    ):
        bootstrap.bootstrap_runs(runs, 10, 0, units)


def test_the_tables_across_runs_name_a_tissue_left_out_of_their_means(tmp_path):
    """A tissue whose observed test values are all constant has null metrics (isoflow
    rescore writes them) and the means over tissues skip it: the single-run table's note
    says so, and the tables across runs name it and how many tissues each mean averages,
    rather than let it drop out of the means silently."""
    from isoflow.metrics import rescore

    experiments, paths = _write(tmp_path, gain=0.2)
    out = tmp_path / "out"
    options = dict(bootstrap_resamples=50, bootstrap_seed=0)
    page = build_experiments(experiments, paths, out, "all", **options).read_text()
    assert "Each mean averages all 5 tissues." in page
    for path in paths:  # a copy of the runs whose Liver test values are all 0
        frame = pd.read_parquet(path.with_name("predictions.parquet"))
        frame.loc[frame["tissue"] == "Liver", "observed"] = 0.0
        frame.to_parquet(path.with_name("predictions.parquet"))
        metrics, _ = rescore(path.parent)
        assert metrics["per_tissue"]["Liver"] == {"r2": None, "spearman": None, "pearson": None}
    left_out = (
        "Each mean averages 4 of 5 tissues, leaving out 1: Liver (metrics undefined: the "
        "observed test values are constant)."
    )
    page = build_experiments(experiments, paths, out, "liver", **options).read_text()
    assert left_out in page and "all 5 tissues" not in page
    build.build_ablation(
        experiments, paths, "modalities", None, out / "a.html", out / "a.svg", **options
    )
    assert left_out in (out / "a.html").read_text()
