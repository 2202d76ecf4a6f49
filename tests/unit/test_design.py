"""Cassette design (isoflow.design, `isoflow design`): every output satisfies every
constraint whatever the seed, impossible constraints fail early with one line, and the
command end to end on tiny bundles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.commands import command_output
from helpers.itrs import ITR3, ITR5
from helpers.training import TISSUES
from isoflow.alphabet import translate_cds
from isoflow.constraints import Constraints, check_all, check_feasible, failed
from isoflow.constructs import Construct, read_constructs, write_constructs_tsv
from isoflow.design import (
    SYNONYMOUS,
    Objective,
    Settings,
    crossover,
    design_job,
    evolve,
    make_layout,
    mutate,
    output_paths,
)
from isoflow.errors import InputError

WINDOW = 512
OWN = "GCAATAAAGC"  # a 3'UTR's own polyA signal, at its end
FIXED = ["utr3:1-5", "cds:10-15"]
CONSTRAINTS = Constraints(
    gc_min=0.3,
    gc_max=0.7,
    gc_window=30,
    gc_window_min=0.15,
    gc_window_max=0.85,
    restriction_sites=("GAATTC", "GGTCTC"),
    max_homopolymer=5,
    repeat_min=12,
)


def _cassette(seed: int) -> Construct:
    """A random cassette with things to repair in its editable parts: an ATG in the 5'UTR, a
    cryptic polyA signal and an EcoRI site in the 3'UTR, a homopolymer; its 3'UTR runs to
    the mRNA's end, its own polyA signal 8 nt before it (kept: never edited)."""
    rng = np.random.default_rng([seed, 5])
    seq = lambda n: "".join(rng.choice(list("ACGT"), n))  # noqa: E731
    codons = [c for c in SYNONYMOUS if translate_cds(c + "TAA") not in ("*", "M", "W")]
    while True:  # redrawn until the fixed bases break nothing (else: impossible, tested below)
        cds = "ATG" + "".join(rng.choice(codons, 20)) + "TAA"
        utr3 = seq(30) + "AATAAA" + seq(10) + "GAATTC" + seq(20) + "TTTTTTT" + seq(20) + OWN
        parts = {"promoter": seq(150), "utr5": seq(10) + "ATG" + seq(20), "cds": cds, "utr3": utr3}
        construct = Construct(f"c{seed}", parts, "test:1")
        layout = make_layout(construct, ["utr5", "utr3", "cds"], fixed=FIXED)
        try:
            check_feasible(layout.reference, layout.fixed, CONSTRAINTS)
        except InputError:
            continue
        return construct


def _fake_scorer(parts_list):
    """(2 models, n, 3 tissues): Liver likes GC in the 3'UTR, Brain A's in the 5'UTR, Testis
    a constant; the second model adds a little noise to Liver."""
    out = np.zeros((2, len(parts_list), 3), dtype=np.float32)
    for i, p in enumerate(parts_list):
        gc = sum(p["utr3"].count(b) for b in "GC") / len(p["utr3"])
        out[:, i, 0] = 3 * gc
        out[:, i, 1] = p["utr5"].count("A") / len(p["utr5"])
        out[:, i, 2] = 0.5
        out[1, i, 0] += 0.01 * (hash(p["utr3"]) % 7)
    return out


def _search(layout, constraints, budget, population, seed=0, objective=None):
    """``evolve`` over ``_fake_scorer``'s two models, for ``Objective(("Liver",))`` unless
    another ``objective`` is given."""
    return evolve(
        _fake_scorer,
        TISSUES,
        layout,
        objective or Objective(("Liver",)),
        constraints,
        Settings(budget=budget, population=population, seed=seed),
        calls_per_candidate=2,
    )


def _refused(tmp_path, table, models: int = 1, **options) -> str:
    """``design_job``'s one-line InputError on ``table`` (construct c1 unless
    ``construct_id`` is given, target Liver), with bundles that do not exist: the
    refusal must come before any model loads."""
    options = {"construct_id": "c1", "target_tissues": ["Liver"], **options}
    bundles = [tmp_path / f"no-such-bundle{i}" for i in range(models)]
    with pytest.raises(InputError) as err:
        design_job(table, bundles, output_paths(tmp_path / "out"), **options)
    text = str(err.value)
    assert "\n" not in text, text
    return text


def _layout_and_constraints(construct, seed):
    layout = make_layout(construct, ["utr5", "utr3", "cds"], fixed=FIXED)
    layout_check = check_all(dict(construct.parts), layout.reference, layout.fixed, CONSTRAINTS)
    assert failed(layout_check), "the start should need repairs"
    return layout


@pytest.mark.parametrize("seed", range(6))
def test_every_design_satisfies_every_constraint(seed):
    construct = _cassette(seed)
    layout = _layout_and_constraints(construct, seed)
    objective = Objective(("Liver",), "max", 1.0)
    out = _search(layout, CONSTRAINTS, 120, 6, seed, objective)
    assert out["calls"] <= 120
    for seq in out["seqs"]:
        parts = layout.parts(seq)
        checks = check_all(parts, layout.reference, layout.fixed, CONSTRAINTS)
        assert not failed(checks), [c.reason for c in failed(checks)]
        assert translate_cds(parts["cds"]) == construct.protein
        assert parts["promoter"] == construct.parts["promoter"]
        assert parts["utr3"][:5] == construct.parts["utr3"][:5]
        assert parts["utr3"][-8:-2] == "AATAAA"  # the cassette's own signal, never edited
        assert "AATAAA" not in parts["utr3"][:-10]  # the cryptic one repaired
    traj = out["trajectory"]
    assert (np.diff(traj["best"]) >= 0).all()  # elitist: the best never gets worse
    assert traj["best"].iloc[-1] > traj["best"].iloc[0]


def test_moves_keep_fixed_bases_and_protein():
    construct = _cassette(0)
    layout = make_layout(construct, ["cds", "utr3"], fixed=["utr3:3-8"])
    rng = np.random.default_rng(0)
    start = layout.start
    for _ in range(50):
        a = mutate(start, layout, rng, 5)
        b = crossover(a, mutate(start, layout, rng, 5), layout, rng)
        for seq in (a, b):
            assert (seq[layout.fixed] == start[layout.fixed]).all()
            assert translate_cds(layout.parts(seq)["cds"]) == construct.protein


def test_layout_rejects_bad_parts_and_positions():
    construct = _cassette(0)
    with pytest.raises(InputError, match="design.editable.*polya"):
        make_layout(construct, ["polya"])
    with pytest.raises(InputError, match="design.fixed.*within 1-"):
        make_layout(construct, ["utr5"], fixed=["utr5:1-500"])
    with pytest.raises(InputError, match="nothing to design"):
        make_layout(construct, ["utr5"], fixed=["utr5:1-33"])


def test_impossible_constraints_fail_before_any_model_loads(tmp_path):
    """One line naming the constraint; the bundle paths do not even exist."""
    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(1)], table)
    for constraints, name in (
        ({"gc_window": 10, "gc_window_min": 0.55, "gc_window_max": 0.58}, "gc_window"),
        ({"aav_limit": 100}, "aav_size"),
        # the start fits 500 nt but its vector, with the two ITRs it lacks, does not
        ({"aav_limit": 500}, "aav_size"),
        # the polyA signal lies in the 3'UTR: with only the 5'UTR editable it cannot go
        ({"gc_window_min": 0.0, "gc_window_max": 1.0, "max_homopolymer": 50}, "polya_signals"),
    ):
        text = _refused(
            tmp_path,
            table,
            editable=["utr5"],
            constraints={"gc_min": 0.0, "gc_max": 1.0, **constraints},
        )
        assert "\n" not in text and f"design.constraints.{name}" in text, text
        if constraints.get("aav_limit") == 500:
            n = len(_cassette(1).cassette)
            assert f"{n} nt + 290 nt for the two ITRs the cassette lacks" in text, text


def test_the_command_ends_impossible_constraints_with_one_line(tmp_path, capsys):
    from isoflow import commands

    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(1)], table)
    settings = tmp_path / "constraints.yaml"
    settings.write_text("gc_window: 10\ngc_window_min: 0.55\ngc_window_max: 0.58\n")
    argv = ["design", "--model", str(tmp_path / "none"), "--constructs", str(table)]
    argv += ["--id", "c1", "--target-tissue", "Liver", "--out", str(tmp_path / "o")]
    assert commands.main([*argv, "--constraints", str(settings)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--constraints:gc_window: impossible" in err, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # a TypeError traceback
        ('gc_max: "0.7"\n', "gc_max: '0.7' is not of type 'number'"),
        # split into the sites G, A, A, T, T, C, the error blaming --restriction-site
        ("restriction_sites: GAATTC\n", "restriction_sites: 'GAATTC' is not of type 'array'"),
        # accepted: no run of one base at all, a GC range that is empty, a string for a switch
        ("max_homopolymer: 0\n", "max_homopolymer: 0 is less than the minimum of 1"),
        (
            "gc_min: 0.9\ngc_max: 0.1\n",
            "gc_min: 0.9 is above gc_max 0.1: no GC content lies between them",
        ),
        ("gc_window_min: 0.9\n", "gc_window_min: 0.9 is above gc_window_max 0.8"),
        ('upstream_atg: "no"\n', "upstream_atg: 'no' is not of type 'boolean'"),
        ("restriction_sites: [GAATTC, GA-TC]\n", "restriction_sites[1]: 'GA-TC' does not match"),
        ("gc_maxx: 0.6\n", "unknown key 'gc_maxx' (did you mean 'gc_max'?)"),
        ("- gc_max: 0.6\n", "[{'gc_max': 0.6}] is not of type 'object'"),
    ],
)
def test_a_constraints_file_is_checked_against_the_schema(tmp_path, capsys, text, message):
    """``isoflow design --constraints`` was only checked for unknown keys; the file is now
    checked as the workflow's design.constraints, one line naming the file and the key."""
    from isoflow import commands

    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(1)], table)
    settings = tmp_path / "constraints.yaml"
    settings.write_text(text)
    argv = ["design", "--model", str(tmp_path / "none"), "--constructs", str(table)]
    argv += ["--id", "c1", "--target-tissue", "Liver", "--out", str(tmp_path / "o")]
    assert commands.main([*argv, "--constraints", str(settings)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"isoflow design: error: {settings}"), err
    assert message in err, err


def test_gc_bounds_are_checked_together_in_the_job_too():
    with pytest.raises(InputError) as err:
        Constraints.from_config({"gc_min": 0.9, "gc_max": 0.1})
    assert str(err.value).startswith("<input>:design.constraints.gc_min: 0.9 is above gc_max")
    assert Constraints.from_config({"gc_min": 0.3, "gc_max": 0.3}).gc_min == 0.3


def test_the_profiles_figure_draws_ids_and_tissues_with_dollars_as_written(tmp_path):
    """A pair of ``$`` in the start's id (the legend) or a tissue was mathtext: a
    ValueError after the whole search, or drawn as math."""
    import html
    import types

    from isoflow.design import plot_profiles

    for cid in ("bad$\\frac$x", "price$5 and $6"):
        result = types.SimpleNamespace(
            designs=[{}],
            objective=np.array([1.0]),
            start_objective=0.5,
            start_predictions=np.zeros((2, 1, 2)),
            predictions=np.ones((2, 1, 2)),
            tissues=["Liver", "Lu$ng$"],
            runs=["r1", "r2"],
            holdout_runs=[],
            extra={"id": cid},
        )
        plot_profiles(result, ["Lu$ng$"], tmp_path / "p.svg")
        svg = (tmp_path / "p.svg").read_text()
        assert "Oblique" not in svg  # mathtext sets the letters between two $ in italics
        for text in (
            f"start {cid} (objective 0.500)",
            "Lu$ng$ *",
            "Design: 2 bundle(s), graded by the bundles it optimised on (no held-out bundle);"
            " * target: Lu$ng$",
        ):
            assert f"<!-- {html.escape(text, quote=False)} -->" in svg, text


def test_design_help_does_not_import_torch():
    out, torch_loaded = command_output(["design", "--help"])
    assert "usage: isoflow design" in out
    assert not torch_loaded


@pytest.mark.slow
def test_design_end_to_end_on_tiny_bundles(tmp_path):
    from helpers.bundles import tiny_bundles

    (tmp_path / "b").mkdir()
    bundles = tiny_bundles(tmp_path / "b", window=WINDOW, seeds=(0, 1))["paths"]
    table = tmp_path / "c.tsv"
    start = _cassette(2)
    write_constructs_tsv([start], table)
    paths = output_paths(tmp_path / "out" / "d")
    (tmp_path / "out").mkdir()
    result = design_job(
        table,
        bundles,
        paths,
        construct_id="c2",
        target_tissues=["Liver"],
        editable=["utr5", "utr3"],
        constraints=CONSTRAINTS.__dict__,
        settings={"budget": 40, "population": 4, "designs": 2, "seed": 0},
        device="cpu",
    )
    assert result.calls <= 40 and len(result.designs) == 2
    # GenBank and TSV outputs read back as the designed cassettes, protein unchanged
    for path in (paths["genbank"], paths["tsv"]):
        back = read_constructs(path)
        assert ["".join(d.values()) for d in result.designs] == [c.cassette for c in back]
        assert all(c.protein == start.protein for c in back)
    constraints = pd.read_csv(paths["constraints"], sep="\t")
    designs = constraints[constraints["role"] == "design"]
    assert len(designs) == 2 * len(set(constraints["constraint"]))
    assert (designs["status"] == "pass").all()
    assert (constraints[constraints["role"] == "start"]["status"] == "fail").any()
    profiles = pd.read_csv(paths["profiles"], sep="\t")
    assert len(profiles) == 2 * len(TISSUES) and (profiles["n_models"] == 2).all()
    trajectory = pd.read_csv(paths["trajectory"], sep="\t")
    assert trajectory["model_calls"].iloc[-1] == result.calls
    for key in ("profiles_figure", "trajectory_figure", "fasta"):
        assert (tmp_path / "out" / paths[key].rsplit("/", 1)[1]).stat().st_size > 0


def test_objective_is_ensemble_mean_minus_k_sd():
    # 2 models x 1 cassette x 3 tissues (Liver target)
    pred = np.array([[[2.0, 1.0, 0.0]], [[3.0, 0.0, 1.0]]])
    per_model = Objective(("Liver",), "max", 1.0).per_model(pred, TISSUES)
    assert per_model[:, 0].tolist() == [1.0, 2.0]
    sd = np.std([1.0, 2.0], ddof=1)
    assert Objective(("Liver",), "max", 2.0).score(pred, TISSUES)[0] == pytest.approx(1.5 - 2 * sd)
    assert Objective(("Liver",), "mean", 0.0).score(pred, TISSUES)[0] == pytest.approx(2.0)
    # one model: no spread, no penalty
    assert Objective(("Liver",), "max", 5.0).score(pred[:1], TISSUES)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("spec", ["utr:1-5", "UTR3:1-5", "polya:1-2"])
def test_fixed_with_an_unknown_part_is_one_line(spec):
    construct = _cassette(0)
    with pytest.raises(InputError) as err:
        make_layout(construct, ["utr5"], fixed=[spec])
    message = str(err.value)
    assert message.startswith(f"<input>:design.fixed: {spec!r}: no part {spec.split(':')[0]!r}")
    assert message.endswith("parts: promoter, utr5, cds, utr3") and "\n" not in message
    if spec == "UTR3:1-5":
        assert "(part names are lower case: 'utr3')" in message


# --- designs.gb keeps the flanks (read back: the same parts, the same ITR verdict)


def _itr_start(tmp_path, itrs: bool) -> Construct:
    """The start as `isoflow design` reads it: a GenBank map with its two AAV2 ITRs
    annotated (itrs), else a construct TSV with flanks (no ITR annotation)."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import SeqFeature, SimpleLocation
    from Bio.SeqRecord import SeqRecord

    inner = dict(_cassette(3).parts)
    parts = {"upstream": ITR5 + "ACGTTGCA" * 4, **inner, "downstream": "TTGACCGA" * 3 + ITR3}
    if not itrs:
        path = tmp_path / "start.tsv"
        write_constructs_tsv([Construct("start", parts)], path)
        (start,) = read_constructs(path)
        return start
    record = SeqRecord(Seq("".join(parts.values())), id="start", name="start")
    record.annotations["molecule_type"] = "DNA"
    at = 0
    kinds = {"promoter": "promoter", "utr5": "5'UTR", "cds": "CDS", "utr3": "3'UTR"}
    for name, seq in parts.items():
        if name in kinds:
            loc = SimpleLocation(at, at + len(seq), strand=1)
            record.features.append(SeqFeature(loc, type=kinds[name]))
        at += len(seq)
    n = len(record)
    for a, b in ((0, len(ITR5)), (n - len(ITR3), n)):
        loc = SimpleLocation(a, b, strand=1)
        record.features.append(SeqFeature(loc, type="repeat_region", qualifiers={"label": ["ITR"]}))
    path = tmp_path / "start.gb"
    SeqIO.write([record], path, "genbank")
    (start,) = read_constructs(path)
    assert start.itrs and dict(start.parts) == parts
    return start


@pytest.mark.parametrize("itrs", [True, False])
def test_designs_genbank_round_trip_keeps_the_flanks_and_the_itr_verdict(tmp_path, itrs):
    import types

    from isoflow.design import write_design

    start = _itr_start(tmp_path, itrs)
    designed = dict(start.parts)
    designed["utr3"] = designed["utr3"][::-1]  # any change of an editable part
    result = types.SimpleNamespace(
        designs=[designed, dict(start.parts)],
        objective=np.array([1.0, 0.5]),
        extra={"id": "start", "itrs": start.itrs, "edits": [10, 0]},
    )
    paths = {"genbank": tmp_path / "d.designs.gb"}
    write_design(result, paths, targets=["Liver"])
    back = read_constructs(paths["genbank"])
    assert [dict(c.parts) for c in back] == result.designs
    # named as designs.fa, designs.tsv and profiles.tsv name them (was LOCUS design1, …)
    assert [c.id for c in back] == ["start_design1", "start_design2"]
    # a start id with spaces (a TSV allows them; a LOCUS name does not): written, not a
    # traceback after the whole search
    result.extra["id"] = "weak P  noARE"
    write_design(result, paths, targets=["Liver"])
    assert [c.id for c in read_constructs(paths["genbank"])] == [
        "weak_P_noARE_design1",
        "weak_P_noARE_design2",
    ]
    assert [c.itrs for c in back] == [itrs, itrs]
    # the same AAV verdict: between ITRs the size is always checked, else only with aav=True
    size = len(start.cassette)
    for path in (paths["genbank"], start.source.rsplit(":", 1)[0]):
        if itrs:
            with pytest.raises(InputError, match=f"between the ITRs .inclusive. is {size:,} nt"):
                read_constructs(path, aav_limit=size - 1, aav_limit_action="error")
        else:
            assert read_constructs(path, aav_limit=size - 1, aav_limit_action="error")
    text = paths["genbank"].read_text()
    assert text.count("misc_feature") == 4 and ("ITR" in text) == itrs


def test_design_runs_on_a_cassette_between_real_itrs_with_default_constraints():
    """The two AAV2 ITRs share a 28-nt direct stretch: with the flanks counted, every
    ITR-flanked start was impossible (design.constraints.repeats)."""
    inner = dict(_cassette(4).parts)
    start = Construct("aav", {"upstream": ITR5, **inner, "downstream": ITR3}, itrs=True)
    layout = make_layout(start, ["utr5", "utr3"])
    out = _search(layout, Constraints(), 30, 4)
    for seq in out["seqs"]:
        parts = layout.parts(seq)
        assert not failed(check_all(parts, layout.reference, layout.fixed, Constraints()))
        assert (parts["upstream"], parts["downstream"]) == (ITR5, ITR3)


def test_a_tsv_start_with_bare_itr_motif_flanks_gets_the_itrs_they_lack():
    """Flanks holding only AAV2's 28-nt ITR motif were taken for whole ITRs (make_layout
    passed itrs=True): the cassette was counted as it stood, 256 nt under the size that
    annotated ITRs or none at all would give."""
    motif = "CTGCGCGCTCGCTCGCTCACTGAGGCCG"
    inner = dict(_cassette(4).parts)
    tsv = Construct("aav", {"upstream": motif, **inner, "downstream": motif}, "t.tsv:2")
    n = len(tsv.cassette)
    tight = Constraints(aav_limit=n + 233)  # the flanks lack 2 x (145 - 28) = 234 nt
    with pytest.raises(InputError, match=rf"{n:,} nt \+ 234 nt its flanks of 28 and 28 nt"):
        make_layout(tsv, ["utr5", "utr3"]).feasible(tight)
    assert make_layout(tsv, ["utr5", "utr3"]).feasible(Constraints(aav_limit=n + 234))[0].ok
    # the same flanks annotated as ITRs (a GenBank start): counted whole, as before
    annotated = Construct("aav", dict(tsv.parts), "t.gb:aav", itrs=True)
    assert make_layout(annotated, ["utr5", "utr3"]).feasible(Constraints(aav_limit=n))[0].ok


# --- the cassette's own polyA signal (an NCBI record's, or a TSV utr3's natural one)


def _ncbi_start(tmp_path, signal_at: int) -> tuple[Construct, int]:
    """An NCBI-style record: promoter, 5'UTR, CDS, a 150-nt 3'UTR to the mRNA's end with
    its only polyA signal, AATAAA at ``signal_at``, annotated as a `regulatory`
    polyA_signal_sequence inside it; read as `isoflow design` reads it."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import SeqFeature, SimpleLocation
    from Bio.SeqRecord import SeqRecord

    rng = np.random.default_rng(11)

    def seq(n: int) -> str:
        text = "".join(rng.choice(list("ACGT"), n))
        for bad, good in (("AATAAA", "AACAAA"), ("ATTAAA", "ATCAAA"), ("ATG", "ACG")):
            text = text.replace(bad, good)
        return text

    codons = [c for c in SYNONYMOUS if translate_cds(c + "TAA") not in ("*", "M", "W")]
    cds = "ATG" + "".join(rng.choice(codons, 30)) + "TAA"
    utr3 = seq(150)
    utr3 = utr3[:signal_at] + "AATAAA" + utr3[signal_at + 6 :]
    parts = {"promoter": seq(150), "utr5": "C" + seq(29), "cds": cds, "utr3": utr3}
    record = SeqRecord(Seq("".join(parts.values())), id="NCBIPAS", name="NCBIPAS")
    record.annotations["molecule_type"] = "DNA"
    kinds = {"promoter": "promoter", "utr5": "5'UTR", "cds": "CDS", "utr3": "3'UTR"}
    at = 0
    for name, part in parts.items():
        loc = SimpleLocation(at, at + len(part), strand=1)
        record.features.append(SeqFeature(loc, type=kinds[name]))
        at += len(part)
    a = at - len(utr3) + signal_at
    q = {"regulatory_class": ["polyA_signal_sequence"]}
    loc = SimpleLocation(a, a + 6, strand=1)
    record.features.append(SeqFeature(loc, type="regulatory", qualifiers=q))
    path = tmp_path / f"ncbi{signal_at}.gbk"
    SeqIO.write([record], path, "genbank")
    (start,) = read_constructs(path)
    return start, a


@pytest.mark.parametrize("signal_at", [120, 60])
def test_design_keeps_the_cassettes_only_polya_signal(tmp_path, signal_at):
    # design read an NCBI record's annotated signal (or a TSV utr3's natural one at its end)
    # as a cryptic signal and edited it away (CCAATAAACC -> CCAATAAGCC): every design lost
    # the cassette's only polyA signal. 120: also at the 3'UTR's end; 60: only annotated
    from isoflow.design import repair

    start, at = _ncbi_start(tmp_path, signal_at)
    assert "polya" not in start.parts and start.cassette[at : at + 6] == "AATAAA"
    tsv = tmp_path / "start.tsv"
    write_constructs_tsv([start], tsv)
    starts = [start] + ([read_constructs(tsv)[0]] if signal_at == 120 else [])
    for construct in starts:  # GenBank (annotated site), TSV (the 3'UTR's end)
        layout = make_layout(construct, ["utr3"])
        assert layout.fixed[at : at + 6].all()
        checks = {c.name: c for c in layout.check(dict(construct.parts), Constraints())}
        assert checks["polya_signals"].ok and checks["polya_present"].ok
        seq, _ = repair(layout.start, layout, Constraints(), np.random.default_rng(0), 1000)
        assert seq is not None and layout.parts(seq) == dict(construct.parts)
        out = _search(layout, Constraints(), 40, 4)
        for seq in out["seqs"]:
            cassette = seq.tobytes().decode()
            assert cassette[at : at + 6] == "AATAAA"
            assert not failed(layout.check(layout.parts(seq), Constraints()))
    # the same TSV start with its utr3 cut before the signal has none: refused, one line
    if signal_at == 120:
        cut = Construct("cut", {**start.parts, "utr3": start.parts["utr3"][:100]}, "t.tsv:2")
        with pytest.raises(InputError) as err:
            make_layout(cut, ["utr3"]).feasible(Constraints())
        text = str(err.value)
        assert "\n" not in text and "design.constraints.polya_present: impossible" in text
        assert "no polyA signal downstream of the CDS" in text


def test_a_start_without_a_polya_signal_fails_before_any_model_loads(tmp_path):
    table = tmp_path / "c.tsv"
    start = _cassette(1)
    bare = Construct("c1", {**start.parts, "utr3": start.parts["utr3"][:-10]})
    write_constructs_tsv([bare], table)
    text = _refused(tmp_path, table, constraints=CONSTRAINTS.__dict__)
    assert "\n" not in text and "design.constraints.polya_present: impossible" in text
    assert text.endswith(
        "add its polyA signal (a TSV polya column, or a GenBank polyA_signal feature), or set "
        "design.constraints.polya_present: false to design it without one"
    )


@pytest.mark.parametrize("polya", ["", "TTGCAAGTC"])
def test_designs_genbank_round_trip_keeps_the_annotated_polya_signal(tmp_path, polya):
    import types

    from isoflow.design import write_design

    start, _ = _ncbi_start(tmp_path, 60)
    parts = dict(start.parts)
    site = start.polya_site
    if polya:  # a signal annotated across the 3'UTR's end: its tail is the polya part
        parts["polya"] = polya
        site = (len(parts["utr3"]) - 3, len(parts["utr3"]))
    result = types.SimpleNamespace(
        designs=[parts],
        objective=np.array([1.0]),
        extra={"id": "s", "itrs": False, "polya_site": site, "edits": [0]},
    )
    paths = {"genbank": tmp_path / "d.designs.gb"}
    write_design(result, paths, targets=["Liver"])
    (back,) = read_constructs(paths["genbank"])
    assert dict(back.parts) == parts and back.polya_site == site


# ---------------------------------------------------------------- a rerun interrupted


def _design_setup(tmp_path):
    import yaml

    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(2)], table)
    settings = tmp_path / "constraints.yaml"
    constraints = {
        k: list(v) if isinstance(v, tuple) else v for k, v in CONSTRAINTS.__dict__.items()
    }
    settings.write_text(yaml.safe_dump(constraints))

    def argv(model):
        out = ["--model", str(tmp_path / model), "--constructs", str(table), "--id", "c2"]
        out += ["--target-tissue", "Liver", "--constraints", str(settings)]
        return out + ["--budget", "24", "--population", "4", "--out", str(tmp_path / "out" / "d")]

    return tmp_path / "out", argv


def test_an_error_while_writing_leaves_the_earlier_outputs_whole(tmp_path, monkeypatch):
    """The trajectory figure failing on a rerun left eight new files beside the earlier
    run's figure."""
    from helpers.interrupted import install, snapshot
    from isoflow import commands

    install("design", monkeypatch.setattr)
    out, argv = _design_setup(tmp_path)
    assert commands.main(["design", *argv("m1")]) == 0
    earlier = snapshot(out)
    assert sorted(earlier) == sorted(output_paths("d").values())

    def broken(*args, **kwargs):
        raise RuntimeError("no figure")

    with monkeypatch.context() as m:
        m.setattr("isoflow.design.plot_trajectory", broken)
        with pytest.raises(RuntimeError, match="no figure"):
            commands.main(["design", *argv("m2")])
    assert snapshot(out) == earlier
    assert commands.main(["design", *argv("m2")]) == 0
    now = snapshot(out)
    assert sorted(now) == sorted(earlier) and now["d.profiles.tsv"] != earlier["d.profiles.tsv"]


def test_a_rerun_killed_while_writing_leaves_the_earlier_outputs_whole(tmp_path, monkeypatch):
    from helpers.interrupted import install, run_killed, snapshot
    from isoflow import commands

    install("design", monkeypatch.setattr)
    out, argv = _design_setup(tmp_path)
    assert commands.main(["design", *argv("m1")]) == 0
    earlier = snapshot(out)
    run_killed("design", argv("m2"), kill="isoflow.design:plot_profiles")
    left = snapshot(out)
    assert {k: v for k, v in left.items() if not k.startswith(".")} == earlier
    assert ".d.design.partial/" in left  # what the kill left: the next run clears it
    assert commands.main(["design", *argv("m2")]) == 0
    now = snapshot(out)
    assert sorted(now) == sorted(earlier) and now["d.profiles.tsv"] != earlier["d.profiles.tsv"]


def test_held_out_bundles_grade_the_designs_they_never_optimised(tmp_path, caplog):
    """The designs' gain was graded only by the bundle(s) that optimised them: a maximum of
    their noisy score. A held-out bundle now scores the start and the designs after the
    search: its gain in its own columns of profiles.tsv and the summary, its predictions
    the same as scoring the designs with it alone; without one the note says self-graded,
    and one optimising bundle alone is a warning."""
    from helpers.bundles import tiny_bundles
    from isoflow.bundle import load_model
    from isoflow.constructs import construct_inputs
    from isoflow.design import summary_table

    (tmp_path / "b").mkdir()
    bundles = tiny_bundles(tmp_path / "b", window=WINDOW, seeds=(0, 1))["paths"]
    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(2)], table)
    (tmp_path / "out").mkdir()
    common = dict(
        construct_id="c2",
        target_tissues=["Liver"],
        constraints=CONSTRAINTS.__dict__,
        settings={"budget": 24, "population": 4, "designs": 2, "seed": 0},
        device="cpu",
    )
    paths = output_paths(tmp_path / "out" / "held")
    result = design_job(table, bundles[:1], paths, holdout=bundles[1:], **common)
    assert result.runs != result.holdout_runs and len(result.holdout_runs) == 1
    held = load_model(bundles[1], device="cpu")
    inputs = [
        construct_inputs(Construct(f"x{i}", parts), window=WINDOW)
        for i, parts in enumerate([result.start, *result.designs])
    ]
    expected = held.predict(inputs)
    profiles = pd.read_csv(paths["profiles"], sep="\t")
    assert (profiles["n_holdout"] == 1).all() and (profiles["n_models"] == 1).all()
    first = profiles[profiles["construct_id"] == "c2_design1"].set_index("tissue")
    np.testing.assert_allclose(first.loc[TISSUES, "holdout_mean"], expected[1], atol=1e-5)
    np.testing.assert_allclose(first.loc[TISSUES, "holdout_start_mean"], expected[0], atol=1e-5)
    objective = result.extra["objective"]
    per = objective.per_model(expected[None], TISSUES)[0]
    own, gain = result.gains()
    np.testing.assert_allclose(gain, per[1:] - per[0], atol=1e-5)
    _, note, frame = summary_table(result, ["Liver"])
    assert frame["gain (held-out)"].iloc[1] == pytest.approx(round(float(gain[0]), 4))
    assert "never optimised on" in note and "self-graded" not in note
    # without a held-out bundle: self-graded, and one bundle alone warns
    with caplog.at_level("WARNING", logger="isoflow.design"):
        alone = design_job(table, bundles[:1], output_paths(tmp_path / "out" / "a"), **common)
    assert any("one bundle optimises and grades" in r.getMessage() for r in caplog.records)
    _, note, frame = summary_table(alone, ["Liver"])
    assert "self-graded" in note and "gain (held-out)" not in frame
    # one bundle has no sd: the mean alone, not "0.916 ± nan"
    cells = frame[["target mean", "other tissues (max)"]].to_numpy().ravel()
    assert not any("±" in c or "nan" in c for c in cells)
    alone_profiles = pd.read_csv(output_paths(tmp_path / "out" / "a")["profiles"], sep="\t")
    assert (alone_profiles["n_holdout"] == 0).all() and alone_profiles["holdout_mean"].isna().all()
    # a held-out bundle that also optimises would grade its own maxima
    with pytest.raises(InputError, match="bundle given twice"):
        design_job(
            table, bundles[:1], output_paths(tmp_path / "out" / "b"), holdout=bundles[:1], **common
        )


def test_the_rule_takes_held_out_runs_as_inputs_and_refuses_an_optimiser():
    from isoflow.workflow import design_inputs

    runs = {"a": {}, "b": {}, "c": {}}
    config = {
        "design": {"construct": "c.tsv", "id": "x", "models": ["a", "b"], "holdout_runs": ["c"]}
    }
    inputs = design_inputs(config, runs)
    assert inputs["models"] == ["results/models/a", "results/models/b"]
    assert inputs["holdout"] == ["results/models/c"]
    config["design"]["holdout_runs"] = ["b"]
    with pytest.raises(InputError, match="design.holdout_runs.*'b' also optimises"):
        design_inputs(config, runs)
    config["design"]["holdout_runs"] = ["z"]
    with pytest.raises(InputError, match="'z' is not a configured run"):
        design_inputs(config, runs)
    del config["design"]["holdout_runs"]
    assert "holdout" not in design_inputs(config, runs)


@pytest.mark.parametrize(("part", "at"), [("utr5", 4), ("utr3", 12), ("cds", 7), ("promoter", 1)])
def test_a_start_with_n_outside_the_flanks_is_one_line_before_any_model_loads(tmp_path, part, at):
    """N in the start's parts reached the designs, every constraint passing: the motif
    checks read letters (an NTG hides an upstream ATG, NNN translates to X on both sides),
    and moves turned some into arbitrary bases."""
    start = _cassette(1)
    parts = dict(start.parts)
    seq = parts[part]
    parts[part] = seq[: at - 1] + "NNN" + seq[at + 2 :]
    table = tmp_path / "c.tsv"
    write_constructs_tsv([Construct("c1", parts, "test:1")], table)
    text = _refused(tmp_path, table, editable=["utr5", "utr3", "cds"])
    assert "\n" not in text and text.startswith(f"{table}:2:c1: part {part}: N at position {at}")
    assert f"3 in {part}" in text, text
    assert not list(tmp_path.glob("out*")), "no output written"


def test_n_in_a_flank_is_a_warning_and_no_design_holds_n(caplog):
    start = _cassette(2)
    parts = {"upstream": "GATTACAGCTTANNNNNNCGATCGGACCAT", **start.parts}
    construct = Construct("c2", parts, "test:1")
    with caplog.at_level("WARNING", logger="isoflow.design"):
        layout = make_layout(construct, ["utr5", "utr3", "cds"], fixed=FIXED)
    assert "6 N in the upstream flank" in caplog.text
    out = _search(layout, CONSTRAINTS, 40, 4)
    for seq in out["seqs"]:
        d = layout.parts(seq)
        assert "N" not in "".join(v for k, v in d.items() if k != "upstream")


def _gc_cds_start() -> Construct:
    """A cassette whose CDS (Ala Leu Arg Gly, GC-rich codons) is the only place GC can
    fall: its codons' synonyms reach 5 of 12 GC per block, not 0."""
    parts = {
        "promoter": "CAGT" * 40,
        "utr5": "CCAGCTTC" * 3,
        "cds": "ATG" + "GCCCTGCGCGGC" * 50 + "TAA",
        "utr3": "CAGTCAGT" * 5 + OWN,
    }
    return Construct("gc", parts, "test:1")


GC_FREE = {  # only the overall GC constrains these designs
    "gc_window_min": 0.0,
    "gc_window_max": 1.0,
    "max_homopolymer": 50,
    "repeat_min": 1000,
    "splice_sites": False,
    "upstream_atg": False,
}


def _least_gc(construct: Construct) -> float:
    """The fewest G + C the cassette can hold with only its CDS's inner codons edited
    (synonyms: the standard code), as a fraction."""
    from isoflow.alphabet import standard_code

    code = standard_code()
    gc = lambda s: sum(b in "GC" for b in s)  # noqa: E731
    cds = construct.parts["cds"]
    codons = [cds[i : i + 3] for i in range(3, len(cds) - 3, 3)]
    least = sum(min(gc(c) for c in code if code[c] == code[x]) for x in codons)
    seq = construct.cassette
    return (gc(seq) - sum(gc(c) for c in codons) + least) / len(seq)


def test_gc_out_of_the_cds_synonyms_reach_fails_before_any_model_loads(tmp_path):
    """Every non-fixed CDS base was taken as free: a gc_max below what synonymous codons
    reach passed the early check and failed only once the models had loaded."""
    start = _gc_cds_start()
    least = _least_gc(start)
    cds = start.parts["cds"]
    naive = (sum(b in "GC" for b in start.cassette) - sum(b in "GC" for b in cds[3:-3])) / len(
        start.cassette
    )
    gc_max = round(least - 0.01, 3)
    assert naive < gc_max  # the old bound took this for reachable
    table = tmp_path / "c.tsv"
    write_constructs_tsv([start], table)
    text = _refused(
        tmp_path,
        table,
        construct_id="gc",
        editable=["cds"],
        constraints={**GC_FREE, "gc_min": 0.0, "gc_max": gc_max},
    )
    assert "design.constraints.gc_overall: impossible" in text and "synonymous" in text, text
    assert f"[{least:.3f}," in text, text


def test_a_reachable_gc_bound_is_met_by_gc_directed_synonyms():
    """Repair swapped a codon for a random synonym whatever the GC had to do: a gc_max the
    synonyms reach was refused ("could not repair the start")."""
    start = _gc_cds_start()
    least = _least_gc(start)
    gc_max = round(least + 0.03, 3)
    constraints = Constraints(**GC_FREE, gc_min=0.0, gc_max=gc_max)
    layout = make_layout(start, ["cds"])
    out = _search(layout, constraints, 20, 4)
    for seq in out["seqs"]:
        parts = layout.parts(seq)
        assert not failed(check_all(parts, layout.reference, layout.fixed, constraints))
        assert translate_cds(parts["cds"]) == start.protein


def test_a_start_that_cannot_be_repaired_fails_before_any_model_loads(tmp_path, monkeypatch):
    import isoflow.design as design_module

    monkeypatch.setattr(design_module, "repair", lambda seq, layout, c, rng, steps: (None, []))
    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(1)], table)
    text = _refused(tmp_path, table, editable=["utr5", "utr3"])
    assert "could not repair the start" in text, text


@pytest.mark.parametrize(("models", "budget"), [(1, 2), (2, 5)])
def test_a_budget_below_the_start_and_one_candidate_is_one_line(tmp_path, models, budget):
    """It returned the start as the only design, without a word."""
    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(1)], table)
    text = _refused(tmp_path, table, models, settings={"budget": budget})
    assert "design.budget" in text and f"set at least {3 * models}" in text, text
    with pytest.raises(InputError, match="design.budget"):
        _search(make_layout(_cassette(1), ["utr5", "utr3"]), CONSTRAINTS, 5, 4)


def test_a_gc_window_out_of_the_cds_synonyms_reach_is_impossible():
    """The windows' check took an editable CDS base for free too: a window inside the CDS
    whose synonyms cannot bring its GC under gc_window_max passed as repairable."""
    start = _gc_cds_start()
    free = {**GC_FREE, "gc_window": 30, "gc_window_max": 0.38}
    layout = make_layout(start, ["cds"])
    with pytest.raises(InputError, match=r"design.constraints.gc_window: impossible.*window at"):
        check_feasible(layout.reference, layout.fixed, Constraints(**free, gc_min=0, gc_max=1))
    # within the synonyms' reach: feasible
    free["gc_window_max"] = 0.6
    check_feasible(layout.reference, layout.fixed, Constraints(**free, gc_min=0, gc_max=1))


# --- editable sites no input of a bundle reads


def test_sites_outside_every_input_a_bundle_reads_are_named_once_per_bundle(monkeypatch, caplog):
    """A bundle whose DNA window and RNA cut miss some editable sites let them drift with
    no effect on its predictions (designs of 11-12 edits, predictions identical to the
    start's): the Scorer now says which, per bundle, when it is built."""
    import types

    import isoflow.bundle
    import isoflow.score
    from isoflow.design import Scorer, unread_sites

    start = _cassette(0)
    layout = make_layout(start, ["promoter", "utr3"])
    tss, (u3a, u3b) = start.tss, start.spans["utr3"]
    assert (tss, u3a) == (150, 249)  # promoter 1-150, utr5 151-183, cds 184-249
    own = u3a + start.parts["utr3"].rfind("AATAAA")  # the own signal: fixed, no site
    # DNA: 100 nt about the TSS (cassette 101-200); RNA: its first 40 nt (151-190)
    kw = dict(window=100, rna_cut=(40, "keep_5prime"))
    unread = unread_sites(layout, tss, modalities=("dna", "rna"), **kw)
    expected = list(range(0, 100)) + [i for i in range(u3a, u3b) if not own <= i < own + 6]
    assert unread.tolist() == expected
    # the RNA's last 40 nt instead: the 3'UTR's end is read; no DNA: the promoter is not
    tail = unread_sites(layout, tss, modalities=("rna",), window=100, rna_cut=(40, "keep_3prime"))
    assert tail.tolist() == list(range(0, 150)) + [i for i in expected if u3a <= i < u3b - 40]
    # nothing cut and a window holding the cassette: every site read; protein alone: none
    whole = dict(window=4 * len(start.cassette), rna_cut=(None, "keep_5prime"))
    assert len(unread_sites(layout, tss, modalities=("dna", "rna"), **whole)) == 0
    assert len(unread_sites(layout, tss, modalities=("protein",), **whole)) == len(layout.sites)

    # the Scorer's warning: one line per bundle, naming what that bundle misses
    def manifest(run, window, max_nt):
        return {
            "run": run,
            "tissues": TISSUES,
            "modalities": ["dna", "rna"],
            "dna": {"window": window},
            "rna": {"max_nt": max_nt, "truncate": "keep_5prime"},
        }

    manifests = [manifest("short", 100, 40), manifest("long", 100, 10_000)]
    model = types.SimpleNamespace(embed=lambda inputs, *a, **k: {})
    monkeypatch.setattr(isoflow.score, "check_bundles", lambda paths: manifests)
    monkeypatch.setattr(isoflow.bundle, "load_model", lambda path, device=None: model)
    with caplog.at_level("WARNING", logger="isoflow.design"):
        Scorer(["a", "b"], start, layout)
    lines = [r.getMessage() for r in caplog.records if r.name == "isoflow.design"]
    assert len(lines) == 2 and lines[0].startswith(
        f"bundle 'short': {len(expected)} of {len(layout.sites)} editable sites lie outside "
        "every input it reads"
    )
    own1 = own + 1
    assert lines[0].endswith(
        f"drift freely: promoter 1-100, utr3 {u3a + 1}-{own1 - 1}, utr3 {own1 + 6}-{u3b} "
        "(1-based cassette positions); make them fixed (design.fixed) or use a bundle that "
        "reads them"
    )
    assert lines[1].startswith(f"bundle 'long': 100 of {len(layout.sites)} editable sites")
    assert "drift freely: promoter 1-100 (1-based" in lines[1]
    caplog.clear()
    manifests[:] = [manifest("wide", 1000, 10_000)]  # reads every site: no line
    with caplog.at_level("WARNING", logger="isoflow.design"):
        Scorer(["c"], start, layout)
    assert not [r for r in caplog.records if r.name == "isoflow.design"]


@pytest.mark.slow
def test_a_finetuned_bundles_design_is_labelled_in_its_tables_units(tmp_path):
    """A fine-tuned bundle's objective and profiles are in its table's units: the summary's
    note and the profiles' axis said log(1 + TPM)."""
    from helpers.bundles import as_finetuned, tiny_bundles
    from isoflow.design import plot_profiles, summary_table

    (tmp_path / "b").mkdir()
    (bundle,) = tiny_bundles(tmp_path / "b", window=WINDOW)["paths"]
    tuned = as_finetuned(bundle, tmp_path / "tuned", table="lab.tsv")
    table = tmp_path / "c.tsv"
    write_constructs_tsv([_cassette(2)], table)
    (tmp_path / "out").mkdir()
    paths = output_paths(tmp_path / "out" / "d")
    result = design_job(
        table,
        [tuned],
        paths,
        construct_id="c2",
        target_tissues=["Liver"],
        constraints=CONSTRAINTS.__dict__,
        settings={"budget": 8, "population": 4, "designs": 1, "seed": 0},
        device="cpu",
    )
    _, note, _ = summary_table(result, ["Liver"])
    assert "in the table's units (lab.tsv)" in note and "TPM" not in note
    plot_profiles(result, ["Liver"], tmp_path / "profiles.svg")  # the PNG's figure, as text
    svg = (tmp_path / "profiles.svg").read_text()
    assert "predicted, the table's units (lab.tsv)" in svg and "TPM" not in svg


def test_mean_sd_text_shows_no_sd_for_one_bundle():
    from isoflow.design import mean_sd_text

    assert mean_sd_text(np.array([0.9161])) == "0.916"
    assert mean_sd_text(np.array([1.0, 2.0])) == "1.500 ± 0.707"
