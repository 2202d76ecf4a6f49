"""Synthesis and AAV constraints on a cassette (isoflow.constraints): each checker on
hand-made positives and negatives, and constraints no design can meet failing early with one
line naming the constraint."""

from __future__ import annotations

import numpy as np
import pytest

from isoflow.constraints import (
    CONSTRAINTS,
    Constraints,
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
    part_spans,
)
from isoflow.errors import InputError


def _parts(**parts):
    order = ("promoter", "utr5", "cds", "utr3")
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
    )
    checks = check_all(parts, parts, np.ones(65, dtype=bool), Constraints(gc_window=10))
    assert tuple(c.name for c in checks) == CONSTRAINTS
    assert all(c.ok for c in checks), [c.reason for c in checks if not c.ok]


# ---------------------------------------------------------------------------- impossible


def _start():
    rng = np.random.default_rng(3)
    seq = lambda n: "".join(rng.choice(list("ACGT"), n))  # noqa: E731
    return _parts(promoter=seq(60), utr5="CCGCAGCTCC", cds="ATGGCCAATAAAGCTTAA", utr3=seq(40))


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
