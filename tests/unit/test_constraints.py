"""Synthesis and AAV constraints on a cassette (isoflow.constraints): each checker on
hand-made positives and negatives, and constraints no design can meet failing early with one
line naming the constraint."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.itrs import ITR3, ITR5
from isoflow.alphabet import reverse_complement
from isoflow.constraints import (
    CONSTRAINTS,
    Constraints,
    PolyA,
    check_all,
    check_feasible,
    check_fixed,
    check_gc,
    check_gc_windows,
    check_homopolymers,
    check_polya_signals,
    check_protein,
    check_repeats,
    check_restriction_sites,
    check_size,
    check_splice_sites,
    check_upstream_atg,
    itr_flanks,
    own_polya,
    part_spans,
)
from isoflow.errors import InputError

# a polyA part: the cassette's own signal (a start without one is refused: polya_present)
POLYA = "AATAAAGCGCTGC"


def _parts(**parts):
    order = ("promoter", "utr5", "cds", "utr3", "polya")
    return {k: parts[k] for k in order if k in parts}


def test_size():
    assert check_size(4700, 4700).ok
    bad = check_size(4701, 4700)
    assert not bad.ok and "4,701 nt" in bad.reason and "4,700" in bad.reason


def test_gc_overall():
    assert check_gc("GCAT", 0.5, 0.5).ok
    assert not check_gc("GGGA", 0.25, 0.65).ok
    assert not check_gc("AAAT", 0.25, 0.65).ok


def test_gc_windows_positive_and_negative():
    ok = "GCAT" * 25
    assert check_gc_windows(ok, 10, 0.4, 0.6).ok
    seq = "GCAT" * 10 + "A" * 10 + "GCAT" * 10
    bad = check_gc_windows(seq, 10, 0.3, 0.7)
    assert not bad.ok
    # the all-A window and its neighbours that are mostly A (GC < 0.3)
    starts = [spans[0][0] for spans in bad.violations]
    assert 40 in starts and 30 not in starts
    assert all(b - a == 10 for ((a, b),) in bad.violations)


def test_restriction_sites_both_strands_and_iupac():
    assert check_restriction_sites("AAAAAA", ["GAATTC"]).ok
    hit = check_restriction_sites("CCGAATTCCC", ["GAATTC"])
    assert not hit.ok and hit.violations == (((2, 8),),)
    # BsaI GGTCTC is not palindromic: its reverse complement GAGACC counts too
    assert not check_restriction_sites("AAGAGACCAA", ["GGTCTC"]).ok
    # IUPAC: BsrI-like ACTGGN... R = A/G
    assert not check_restriction_sites("TTGGATCCTT", ["GGRTCC"]).ok
    assert check_restriction_sites("TTGGCTCCTT", ["GGRTCC"]).ok


def test_polya_signals_only_in_transcribed_parts():
    parts = _parts(promoter="AATAAA" + "C" * 10, utr5="CCCC", cds="ATGGCCTAA", utr3="GGATTAAAGG")
    check = check_polya_signals(parts, part_spans(parts), ["AATAAA", "ATTAAA"])
    assert not check.ok
    # the promoter's AATAAA is not a cryptic signal; the 3'UTR's ATTAAA at 2-7 of it is
    start = len(parts["promoter"]) + 4 + 9 + 2
    assert check.violations == (((start, start + 6),),)
    clean = _parts(promoter="AATAAA", utr5="CC", cds="ATGTAA", utr3="GGGG")
    assert check_polya_signals(clean, part_spans(clean), ["AATAAA"]).ok


def test_upstream_atg():
    parts = _parts(promoter="ATG", utr5="CCATGC", cds="ATGTAA", utr3="GG")
    check = check_upstream_atg(parts, part_spans(parts))
    assert not check.ok and check.violations == (((5, 8),),)
    clean = _parts(promoter="ATG", utr5="CCATC", cds="ATGTAA", utr3="GG")
    assert check_upstream_atg(clean, part_spans(clean)).ok


def test_splice_sites_consensus():
    donor = _parts(promoter="C", utr5="TTCAGGTAAGTTT", cds="ATGTAA", utr3="GG")
    assert not check_splice_sites(donor, part_spans(donor)).ok
    acceptor = _parts(promoter="C", utr5="A", cds="ATGTAA", utr3="TTCTCTTCCTACAGGA")
    assert not check_splice_sites(acceptor, part_spans(acceptor)).ok
    # one base off the consensus: GTAAGC is not GTRAGT; an 9-nt tract is not 10
    near = _parts(promoter="C", utr5="TTCAGGTAAGCTT", cds="ATGTAA", utr3="TCTCTTCCTACAGGA")
    assert check_splice_sites(near, part_spans(near)).ok


def test_homopolymers():
    assert check_homopolymers("ACGT" + "A" * 10 + "C", 10).ok
    bad = check_homopolymers("ACGT" + "A" * 11 + "C", 10)
    assert not bad.ok and bad.violations == (((4, 15),),)


def test_repeats_report_every_copy():
    unit = "ACGTTGCAAGCTTAGCCGTA"  # 20 nt
    seq = unit + "GGG" + unit
    check = check_repeats(seq, 20)
    assert not check.ok and check.violations == (((0, 20), (23, 43)),)
    assert check_repeats(unit + "GGG" + unit[:-1] + "C", 20).ok


def test_fixed_positions_and_protein():
    fixed = np.array([True, True, False, False])
    assert check_fixed("ACTT", "ACGG", fixed).ok
    assert not check_fixed("TCGG", "ACGG", fixed).ok
    assert check_protein("ATGAAGTAA", "MK", (0, 9)).ok  # AAA -> AAG: synonymous
    bad = check_protein("ATGAACTAA", "MK", (10, 19))
    assert not bad.ok and bad.violations == (((13, 16),),)


def test_check_all_names_every_constraint_in_order():
    parts = _parts(
        promoter="GACTTCAGCGTAACGGTCAAGCTTGCAGTACCGATGCAAT",
        utr5="GCACGCAC",
        cds="ATGGCCTAA",
        utr3="GCTAGCTA",
        polya=POLYA,
    )
    checks = check_all(parts, parts, np.ones(65 + 13, dtype=bool), Constraints(gc_window=10))
    assert tuple(c.name for c in checks) == CONSTRAINTS
    assert all(c.ok for c in checks), [c.reason for c in checks if not c.ok]


# ---------------------------------------------------------------------------- impossible


def _start():
    rng = np.random.default_rng(3)
    seq = lambda n: "".join(rng.choice(list("ACGT"), n))  # noqa: E731
    return _parts(
        promoter=seq(60), utr5="CCGCAGCTCC", cds="ATGGCCAATAAAGCTTAA", utr3=seq(40), polya=POLYA
    )


def _one_line(err: InputError, name: str) -> str:
    text = str(err.value)
    assert "\n" not in text
    assert f"design.constraints.{name}" in text, text
    assert "impossible" in text
    return text


def test_gc_window_bounds_no_sequence_meets():
    parts = _start()
    fixed = np.zeros(sum(map(len, parts.values())), dtype=bool)
    c = Constraints(gc_window=10, gc_window_min=0.55, gc_window_max=0.58, gc_min=0, gc_max=1)
    with pytest.raises(InputError) as err:
        check_feasible(parts, fixed, c)
    _one_line(err, "gc_window")
    with pytest.raises(InputError) as err:
        check_feasible(parts, fixed, Constraints(gc_min=0.7, gc_max=0.6))
    _one_line(err, "gc_overall")


def test_fixed_part_already_violating_fails_early():
    parts = _start()  # the CDS holds AATAAA (codons AAT AAA: N K)
    n = sum(map(len, parts.values()))
    spans = part_spans(parts)
    fixed = np.ones(n, dtype=bool)
    fixed[slice(*spans["utr3"])] = False
    loose = Constraints(gc_min=0, gc_max=1, gc_window_min=0, gc_window_max=1)
    with pytest.raises(InputError) as err:
        check_feasible(parts, fixed, loose)
    text = _one_line(err, "polya_signals")
    assert "all fixed" in text
    # the same signal with the CDS editable is only a violation to repair, not impossible
    fixed[slice(*spans["cds"])] = False
    checks = check_feasible(parts, fixed, loose)
    assert not {c.name: c for c in checks}["polya_signals"].ok


def test_size_above_limit_and_fixed_gc_out_of_reach():
    parts = _start()
    n = sum(map(len, parts.values()))
    loose = dict(gc_window_min=0, gc_window_max=1)
    with pytest.raises(InputError) as err:
        check_feasible(parts, np.zeros(n, dtype=bool), Constraints(aav_limit=n - 1, **loose))
    _one_line(err, "aav_size")
    all_fixed = np.ones(n, dtype=bool)
    with pytest.raises(InputError) as err:
        check_feasible(parts, all_fixed, Constraints(gc_min=0.9, gc_max=1.0, **loose))
    _one_line(err, "gc_overall")


# --- motifs across part junctions (the transcribed region is searched joined)

_OPEN = Constraints(gc_min=0, gc_max=1, gc_window_min=0, gc_window_max=1)


def _check_named(parts, name, constraints=_OPEN):
    fixed = np.zeros(sum(map(len, parts.values())), dtype=bool)
    return {c.name: c for c in check_all(parts, parts, fixed, constraints)}[name]


def test_polya_signal_across_the_cds_3utr_junction():
    # CDS ...GAA TAA + 3'UTR A...: AATAAA across the junction, in neither part alone
    parts = _parts(promoter="GCGCGCGCGC", utr5="GCCACC", cds="ATGGCTGAATAA", utr3="ACGCGTCCAGCGC")
    assert "AATAAA" not in parts["cds"] and "AATAAA" not in parts["utr3"]
    check = _check_named(parts, "polya_signals")
    at = 10 + 6 + 7  # 0-based cassette offset of the A of AATAAA (CDS base 8)
    assert not check.ok and check.violations == (((at, at + 6),),)
    assert f"at {at + 1}-{at + 6} (1-based cassette positions)" in check.reason


def test_polya_signal_across_the_5utr_cds_junction():
    parts = _parts(promoter="GCGCGCGCGC", utr5="GCCAATAA", cds="ATGGCTTAA", utr3="CCGCGTCCAGCGC")
    check = _check_named(parts, "polya_signals")
    at = 10 + 3
    assert not check.ok and check.violations == (((at, at + 6),),)
    # the promoter/5'UTR junction is not transcribed: an AATAAA across it does not count
    parts = _parts(promoter="GCGCGCAATA", utr5="AAGCCACC", cds="ATGGCTTAA", utr3="CCGCGTCCAGCGC")
    assert _check_named(parts, "polya_signals").ok


def test_splice_donor_across_the_cds_3utr_junction():
    # CDS ...CAG GTAA + 3'UTR GT...: consensus donor CAG|GTAAGT across the junction
    parts = _parts(promoter="GCGCGCGCGC", utr5="GCCACC", cds="ATGGCCAGGTAA", utr3="GTCCGCGTCC")
    check = _check_named(parts, "splice_sites")
    at = 10 + 6 + 5
    assert not check.ok and check.violations == (((at, at + 9),),)


def test_junction_motif_is_repairable_when_one_side_is_editable():
    """A motif across a fixed CDS and an editable 3'UTR is not impossible (its span reaches
    an editable base); with both sides fixed it is."""
    parts = _parts(
        promoter="GCGCGCGCGC", utr5="GCCACC", cds="ATGGCTGAATAA", utr3="ACGCGTCCAGCGC", polya=POLYA
    )
    n = sum(map(len, parts.values()))
    fixed = np.ones(n, dtype=bool)
    fixed[slice(*part_spans(parts)["utr3"])] = False  # the 3'UTR editable
    check_feasible(parts, fixed, _OPEN)
    with pytest.raises(InputError, match=r"design\.constraints\.polya_signals: impossible"):
        check_feasible(parts, np.ones(n, dtype=bool), _OPEN)


# --- synthesis checks and the ITR flanks


def _aav(**inner):
    rng = np.random.default_rng(7)
    seq = lambda n: "".join(rng.choice(list("ACGT"), n))  # noqa: E731
    parts = {
        "upstream": ITR5,
        "promoter": inner.get("promoter", seq(200)),
        "utr5": inner.get("utr5", "GCCACC"),
        "cds": inner.get("cds", "ATGGCTGCTTAA"),
        "utr3": inner.get("utr3", seq(60)),
        "polya": POLYA,
        "downstream": ITR3,
    }
    return parts


def test_itr_sequences_hold_the_shared_direct_stretch():
    assert len(ITR5) == len(ITR3) == 141
    assert "CTGCGCGCTCGCTCGCTCACTGAGGCCG" in ITR5 and "CTGCGCGCTCGCTCGCTCACTGAGGCCG" in ITR3
    assert not check_repeats(ITR5 + ITR3, 20).ok  # the repeat the flanks exclusion is for


def test_repeats_wholly_inside_the_itr_flanks_do_not_count():
    parts = _aav()
    check = _check_named(parts, "repeats", Constraints())
    assert check.ok, check.reason
    assert "wholly inside the flanks not counted" in check.reason
    # ... and such a start is feasible with the default constraints, flanks fixed
    n = sum(map(len, parts.values()))
    fixed = np.ones(n, dtype=bool)
    a, b = part_spans(parts)["utr3"]
    fixed[a:b] = False
    check_feasible(parts, fixed, Constraints())


def test_a_repeat_with_one_copy_in_an_itr_and_one_outside_counts():
    copy = ITR5[10:40]  # 30 nt of the 5' ITR, also in the 3'UTR
    parts = _aav(utr3="ACGTAC" + copy + "TTGACA")
    check = _check_named(parts, "repeats", Constraints())
    assert not check.ok
    spans = part_spans(parts)
    at = spans["utr3"][0] + 6
    counted = [v for v in check.violations if any(a >= spans["utr3"][0] for a, _ in v)]
    assert counted and ((10, 30), (at, at + 20)) in [v[:1] + v[-1:] for v in counted]
    # every counted violation reaches outside the flanks
    lo, hi = spans["promoter"][0], spans["downstream"][0]
    assert all(any(lo <= a < hi or lo < b <= hi for a, b in v) for v in check.violations)
    # with the 3'UTR fixed too it is impossible: one copy lies in fixed designable sequence
    with pytest.raises(InputError, match=r"design\.constraints\.repeats: impossible"):
        check_feasible(parts, np.ones(sum(map(len, parts.values())), dtype=bool), Constraints())


def test_homopolymers_and_gc_windows_inside_the_flanks_do_not_count():
    parts = _aav()
    parts["upstream"] = "A" * 15 + "G" * 60 + ITR5
    spans = part_spans(parts)
    tight = Constraints(gc_window=40, gc_window_min=0.1, gc_window_max=0.9)
    homo = _check_named(parts, "homopolymers", tight)
    assert homo.ok and "(2 wholly inside the flanks not counted)" in homo.reason  # A15, G60
    gc = _check_named(parts, "gc_window", tight)
    assert gc.ok and "wholly inside the flanks not counted" in gc.reason
    # the same run outside the flanks (in the 3'UTR) counts
    parts["utr3"] = "GC" * 10 + "A" * 15 + "GC" * 10
    homo = _check_named(parts, "homopolymers", tight)
    a = spans["utr3"][0] + 20
    assert not homo.ok and homo.violations == (((a, a + 15),),)
    # a window reaching past the flank into the promoter counts: GC-poor promoter start
    parts = _aav(promoter="A" * 30 + "GCAT" * 40)
    parts["upstream"] = ITR5[:-30] + "A" * 30
    gc = _check_named(parts, "gc_window", tight)
    b = part_spans(parts)["promoter"][0]
    assert not gc.ok and all(a < b < a + 40 or a >= b for ((a, _),) in gc.violations)


# --- the cassette's own polyA signal: never cryptic, always there


def _rand(seed: int, n: int) -> str:
    rng = np.random.default_rng(seed)
    seq = "C" + "".join(rng.choice(list("ACGT"), n - 1))  # C: none across a junction
    return seq.replace("AATAAA", "AACAAA").replace("ATTAAA", "ATCAAA")


def _mrna(utr3: str, **more):
    """A cassette without a polya part: its 3'UTR runs to the mRNA's 3' end (a TSV's utr3)."""
    return {"promoter": _rand(1, 60), "utr5": "GCCACC", "cds": "ATGGCTGCTTAA", "utr3": utr3, **more}


def test_the_signal_at_the_3utr_end_is_the_cassettes_own_not_a_cryptic_one():
    # a TSV whose utr3 runs to the mRNA's end holds its natural AATAAA ~20 nt before it:
    # it was reported as a cryptic signal, and design edited the cassette's only signal away
    body = _rand(2, 120)
    parts = _mrna(body[:100] + "CCAATAAACC" + body[100:])
    spans = part_spans(parts)
    at = spans["utr3"][0] + 102
    own = own_polya(parts)
    assert own == PolyA(((at, at + 6),), "utr3_end")
    check = _check_named(parts, "polya_signals")
    assert check.ok, check.reason
    assert "(1 in the cassette's own polyA signal not counted)" in check.reason
    present = _check_named(parts, "polya_present")
    assert present.ok and present.reason == (
        f"the signal in the 3'UTR's last 40 nt at {at + 1}-{at + 6} (1-based cassette "
        "positions), as in the start"
    )
    # cryptic signals elsewhere still count: 5'UTR, CDS (AAT AAA), the 3'UTR upstream
    parts = _mrna(
        "ATTAAA" + body[:94] + "CCAATAAACC" + body[100:],
        utr5="GCAATAAAGCC",
        cds="ATGAATAAAGCTTAA",
    )
    check = _check_named(parts, "polya_signals")
    u5, cds, u3 = (part_spans(parts)[p][0] for p in ("utr5", "cds", "utr3"))
    assert [v[0][0] for v in check.violations] == [u5 + 2, cds + 3, u3]
    assert not check.ok and "1 in the cassette's own polyA signal not counted" in check.reason


def test_own_polya_sources_in_order():
    tail = "GGATTAAACCGCAATAAAGCGC"  # ATTAAA and AATAAA both in the last 40 nt
    parts = _mrna(_rand(3, 80) + tail)
    u3 = part_spans(parts)["utr3"][0]
    both = own_polya(parts)
    assert both.source == "utr3_end" and both.spans == ((u3 + 82, u3 + 88), (u3 + 92, u3 + 98))
    # a signal 41 nt from the end is not the mRNA's own: a cryptic one, and none own
    far = _mrna("AATAAA" + _rand(4, 35))
    assert own_polya(far) == PolyA((), "none")
    assert not _check_named(far, "polya_signals").ok
    # an annotated site (GenBank polya_site) wins over the 3'UTR's end, even far from it
    site = own_polya(far, site=(0, 6))
    assert site == PolyA(((u3, u3 + 6),), "annotated")
    fixed = np.zeros(sum(map(len, far.values())), dtype=bool)
    named = {c.name: c for c in check_all(far, far, fixed, _OPEN, polya=site)}
    assert named["polya_signals"].ok and named["polya_present"].ok
    # a polya part wins over both: the 3'UTR's end signal is then a cryptic one
    with_part = {**parts, "polya": POLYA}
    own = own_polya(with_part)
    assert own == PolyA((part_spans(with_part)["polya"],), "polya")
    check = _check_named(with_part, "polya_signals")
    assert not check.ok and len(check.violations) == 2
    assert _check_named(with_part, "polya_present").reason.startswith("the polya part at ")


def test_a_start_without_its_own_polya_signal_is_refused_not_designed():
    parts = _mrna(_rand(5, 80))
    n = sum(map(len, parts.values()))
    fixed = np.ones(n, dtype=bool)
    fixed[slice(*part_spans(parts)["utr3"])] = False
    with pytest.raises(InputError) as err:
        check_feasible(parts, fixed, _OPEN)
    text = _one_line(err, "polya_present")
    assert (
        "no polyA signal downstream of the CDS: no polya part, no polyA signal annotated "
        "in the 3'UTR, no AATAAA/ATTAAA in the 3'UTR's last 40 nt" in text
    )
    assert "design.constraints.polya_present: false" in text
    # switched off: designed, and the reason still says it has none
    loose = Constraints(**{**_OPEN.__dict__, "polya_present": False})
    present = {c.name: c for c in check_feasible(parts, fixed, loose)}["polya_present"]
    assert present.ok and present.reason.startswith("not required (polya_present: false); no ")


def test_a_candidate_that_changed_the_starts_own_signal_fails():
    start = _mrna(_rand(6, 80) + "CCAATAAACC" + _rand(7, 15))
    moved = dict(start, utr3=start["utr3"].replace("CCAATAAACC", "CCAATAAGCC"))
    fixed = np.zeros(sum(map(len, start.values())), dtype=bool)
    named = {c.name: c for c in check_all(moved, start, fixed, _OPEN)}
    at = part_spans(start)["utr3"][0] + 82
    assert not named["polya_present"].ok
    assert named["polya_present"].violations == (((at, at + 6),),)
    assert "the start's own polyA signal, the signal in the 3'UTR's last 40 nt" in (
        named["polya_present"].reason
    )


def test_aav_size_counts_itr_to_itr():
    # a 4,600-nt cassette without ITRs passed a 4,700-nt limit, its vector ~4,890 nt
    parts = _mrna(_rand(8, 4600 - 78 - 6) + "AATAAA")
    n = sum(map(len, parts.values()))
    assert n == 4600
    fixed = np.zeros(n, dtype=bool)
    with pytest.raises(InputError) as err:
        check_feasible(parts, fixed, _OPEN)
    text = _one_line(err, "aav_size")
    assert (
        "the start is 4,600 nt + 290 nt for the two ITRs the cassette lacks "
        "(design.constraints.itrs_nt) = 4,890 nt is above the 4,700-nt AAV packaging limit; "
        "designs keep its length; if its flanks hold its ITRs, set itrs_nt: 0"
    ) in text
    no_itrs = Constraints(**{**_OPEN.__dict__, "itrs_nt": 0})
    size = check_feasible(parts, fixed, no_itrs)[0]
    assert size.ok and size.reason == "4,600 nt <= 4,700 nt packaging limit"
    # annotated ITRs (the GenBank reader's verdict) or AAV2 ITRs in both flanks: counted whole
    assert check_all(parts, parts, fixed, _OPEN, itrs=True)[0].ok
    inner = dict(parts, utr3=parts["utr3"][: -2 * len(ITR5)])
    flanked = {"upstream": ITR5, **inner, "downstream": ITR3}
    assert itr_flanks(flanked) and not itr_flanks(inner)
    # 141-nt flanks (a 130-nt ITR + 11 nt of plasmid) each lack 4 nt of a 145-nt ITR
    assert check_all(flanked, flanked, np.zeros(4600, dtype=bool), _OPEN)[0].reason == (
        "4,600 nt + 8 nt its flanks of 141 and 141 nt (taken for its ITRs: they hold AAV2's "
        "ITR motif) lack of two ITRs of 290 nt together (design.constraints.itrs_nt) = 4,608 nt "
        "<= 4,700 nt packaging limit"
    )
    small = check_all(inner, inner, np.zeros(4600 - 282, dtype=bool), _OPEN)[0]
    assert small.ok and "+ 290 nt for the two ITRs the cassette lacks" in small.reason


def test_aav_size_motif_flanks_are_not_a_free_pass():
    # flanks holding only the 28-nt ITR motif were taken for whole ITRs: the payload passed
    # the 4,700-nt limit as 4,687 nt with them and failed as 4,631 + 290 = 4,921 nt without
    motif = "CTGCGCGCTCGCTCGCTCACTGAGGCCG"
    payload = _mrna(_rand(9, 4631 - 78 - 6) + "AATAAA")
    assert sum(map(len, payload.values())) == 4631
    bare = check_all(payload, payload, np.zeros(4631, dtype=bool), _OPEN)[0]
    assert not bare.ok and "= 4,921 nt is above" in bare.reason
    for up, down in ((motif, motif), (motif, reverse_complement(motif))):
        flanked = {"upstream": up, **payload, "downstream": down}
        assert itr_flanks(flanked)
        fixed = np.zeros(4687, dtype=bool)
        size = check_all(flanked, flanked, fixed, _OPEN)[0]
        assert not size.ok and size.reason == (
            "4,687 nt + 234 nt its flanks of 28 and 28 nt (taken for its ITRs: they hold AAV2's "
            "ITR motif) lack of two ITRs of 290 nt together (design.constraints.itrs_nt) = "
            "4,921 nt is above the 4,700-nt AAV packaging limit"
        )
        with pytest.raises(InputError) as err:
            check_feasible(flanked, fixed, _OPEN)
        assert _one_line(err, "aav_size").endswith(
            "designs keep its length; if its flanks hold its whole ITRs, set itrs_nt: 0 (or "
            "annotate the ITRs in a GenBank start)"
        )
        # itrs_nt: 0 (the flanks are the user's whole ITRs) or annotated ITRs count it whole
        whole = Constraints(**{**_OPEN.__dict__, "itrs_nt": 0})
        assert check_feasible(flanked, fixed, whole)[0].reason == (
            "4,687 nt (flanks of 28 and 28 nt holding AAV2's ITR motif, taken for its ITRs) "
            "<= 4,700 nt packaging limit"
        )
        assert check_all(flanked, flanked, fixed, _OPEN, itrs=True)[0].ok
    # a flank longer than its share (an ITR and a spacer) lacks nothing; the other its part
    long_up = {"upstream": _rand(10, 200) + motif, **payload, "downstream": motif}
    size = check_all(long_up, long_up, np.zeros(4631 + 256, dtype=bool), _OPEN)[0]
    assert size.reason.startswith("4,887 nt + 117 nt its flanks of 228 and 28 nt")
    assert "= 5,004 nt is above" in size.reason
