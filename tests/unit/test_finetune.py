"""isoflow finetune: grouped folds, baselines, the run end to end (resume, bundle), LoRA
bundles, the rule's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isoflow.errors import InputError
from isoflow.finetune import (
    column_tissues,
    finetune_settings,
    fold_groups,
    grouped_folds,
    grouping_note,
    inner_split,
    kmer_counts,
    merge_identical,
    near_identical,
    ridge_predict,
    shared_kmers,
    zero_shot,
)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_folds_never_split_a_group(seed):
    rng = np.random.default_rng(seed)
    groups = rng.choice([f"g{i}" for i in range(9)], size=80)
    folds = grouped_folds(groups, 4, seed)
    assert len(folds) == 4
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(80))  # each construct held out once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        fit, valid = inner_split(groups[train], 0.25, seed)
        assert not set(groups[train][fit]) & set(groups[train][valid])
        assert len(fit) + len(valid) == len(train) and len(valid) > 0


def test_folds_need_as_many_groups_as_folds():
    with pytest.raises(InputError, match="2 group.s. for 3 folds"):
        grouped_folds(["a", "a", "b"], 3)


# ---------------------------------------------------------------- identical constructs

BASES = "ACGT"


def _variant(seq: str, rng, k: int = 1) -> str:
    out = list(seq)
    for i in rng.choice(len(out), k, replace=False):
        out[i] = BASES[(BASES.index(out[i]) + 1) % 4]
    return "".join(out)


def _leak_table(path, with_group=False, seed=0):
    """The reviewer's leak (/tmp/rev_c/gb/leak.py, smaller): elements x (single-base
    variants + two replicate rows of the wild type under other ids), no group column by
    default; the measured value follows the element."""
    rng = np.random.default_rng(seed)
    header = ["id", *(["group"] if with_group else []), "promoter", "utr5", "cds", "utr3", "a"]
    lines = ["\t".join(header)]
    for e in range(4):
        wild = "".join(rng.choice(list(BASES), 200))
        promoters = [_variant(wild, rng) for _ in range(3)] + [wild, wild]
        for v, promoter in enumerate(promoters):
            cid = f"el{e}_v{v}" if v < 3 else f"el{e}_rep{v - 2}"
            group = [f"g{e}_{v}"] if with_group else []  # a group per row: nothing shared
            value = f"{2 * e + rng.uniform(0, 0.1):.3f}"
            lines.append("\t".join([cid, *group, promoter, "GCCACC", "ATGAAATAA", "TTTT", value]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_identical_constructs_always_share_a_group():
    """The same key (cassette or model inputs) in any key column merges the groups; a
    merged group takes its first construct's label."""
    merged, pairs = merge_identical(["a", "b", "c", "d"], [["s", "t", "s", "u"]])
    assert merged.tolist() == ["a", "b", "a", "d"] and pairs == [(0, 2)]
    # a second key column (the model inputs) links b and d; a chain a-c, c-d links all three
    merged, _ = merge_identical(["a", "b", "c", "d"], [["s", "t", "s", "u"], [1, 2, 3, 2]])
    assert merged.tolist() == ["a", "b", "a", "b"]
    merged, _ = merge_identical(["a", "b", "c", "d"], [["s", "t", "s", "u"], [1, 2, 4, 4]])
    assert merged.tolist() == ["a", "b", "a", "a"]
    # constructs of one group already: nothing merged
    merged, pairs = merge_identical(["g", "g", "h"], [["s", "s", "t"]])
    assert merged.tolist() == ["g", "g", "h"] and pairs == []


def test_near_identical_finds_point_variants_in_other_groups_only():
    rng = np.random.default_rng(0)
    wild = "".join(rng.choice(list(BASES), 300))
    far = _variant(wild, rng, 10)
    seqs = [wild, _variant(wild, rng, 1), _variant(wild, rng, 3), far, wild[:-1], "ACGT" * 75]
    found = near_identical(seqs, ["a", "b", "c", "d", "e", "f"])
    assert found.complete and found.constructs == [0, 1, 2]
    assert found.example[:2] == (0, 1) and found.example[2] == 1
    # the same group: not a leak
    assert near_identical(seqs, ["a", "a", "a", "d", "e", "f"]).constructs == []
    # fewer varying positions than allowed mismatches: every pair is near
    assert near_identical(["AAAA", "AAAT", "AATT"], ["x", "y", "z"]).constructs == [0, 1, 2]


def test_the_near_identical_check_stops_at_its_bound():
    rng = np.random.default_rng(1)
    # two prefixes, each shared by half the cassettes: every pair within a half is compared
    prefixes = ["".join(rng.choice(list(BASES), 300)) for _ in range(2)]
    seqs = [prefixes[i % 2] + "".join(rng.choice(list(BASES), 300)) for i in range(50)]
    seqs += ["ACGT" * 10, "ACG"]  # no other of their length: checked without a comparison
    whole = near_identical(seqs, range(52))
    assert whole.complete and whole.constructs == [] and whole.compared > 0
    assert (whole.checked, whole.total) == (52, 52)
    part = near_identical(seqs, range(52), max_compared=whole.compared // 2)
    assert not part.complete and part.compared <= whole.compared // 2
    # the 50 of one length are checked only once every block of them is read
    assert (part.checked, part.total) == (2, 52)
    # a tiny bound: stopped before the first comparison, only the 2 of their own length
    tiny = near_identical(seqs, range(52), max_compared=1)
    assert (tiny.complete, tiny.compared, tiny.checked, tiny.total) == (False, 0, 2, 52)
    # a pair found near before the stop is checked, the rest of its length is not
    seqs = seqs[:8]
    seqs.insert(1, seqs[0][:-1] + ("A" if seqs[0][-1] != "A" else "C"))
    whole = near_identical(seqs, range(9))
    assert whole.complete and whole.constructs == [0, 1]
    found = near_identical(seqs, range(9), max_compared=whole.compared - 1)
    assert not found.complete and found.constructs == [0, 1]
    assert (found.checked, found.total) == (2, 9)


def test_fold_groups_merge_replicates_and_warn_of_variants(tmp_path, caplog):
    """The leak: replicate rows under other ids share a group, and the single-base variants
    of an element in other groups are one warning line naming the table, a pair and the
    fix; the record says how the folds were grouped."""
    from isoflow.constructs import construct_inputs
    from isoflow.measurements import read_measurements

    table = read_measurements(_leak_table(tmp_path / "m.tsv"))
    inputs = [construct_inputs(c, window=1024) for c in table.constructs]
    seqs = [c.cassette for c in table.constructs]
    with caplog.at_level("INFO", logger="isoflow.finetune"):
        groups, record = fold_groups(
            table.ids, table.groups, seqs, inputs, by=table.grouping, where=table.path
        )
    ids = table.ids
    for e in range(4):
        assert groups[ids.index(f"el{e}_rep1")] == groups[ids.index(f"el{e}_rep2")]
    assert record["by"] == "construct id"
    assert (record["groups_given"], record["groups"]) == (20, 16)
    assert record["identical"] == {"constructs": 8, "example": ["el0_rep1", "el0_rep2"]}
    near = record["near_identical"]
    assert near["constructs"] == 20 and near["complete"] and near["max_mismatches"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert warnings[0].startswith(f"{table.path}: 8 construct(s) are identical")
    assert warnings[1].startswith(f"{table.path}: 20 construct(s) have a near-identical")
    assert f"e.g. {near['example'][0]} and {near['example'][1]}" in warnings[1]
    assert warnings[1].endswith("add a group column (e.g. the element each variant derives from)")
    # the variants' groups share their element's k-mers too (6 pairs per element), but
    # each pair holds near-identical constructs: the warning above stands for them, and
    # no second warning names them again
    alike = record["shared_kmers"]
    assert (alike["pairs"], alike["near_identical_pairs"], alike["examples"]) == (24, 24, [])
    assert "share most of their" not in grouping_note(record)
    # grouped by element in a group column: nothing to merge or warn of
    caplog.clear()
    rows = (tmp_path / "m.tsv").read_text().splitlines()
    lines = [rows[0].replace("id\t", "id\tgroup\t", 1)]
    lines += [r.replace("\t", f"\t{r.split('_')[0]}\t", 1) for r in rows[1:]]
    (tmp_path / "g.tsv").write_text("\n".join(lines) + "\n")
    grouped = read_measurements(tmp_path / "g.tsv")
    with caplog.at_level("INFO", logger="isoflow.finetune"):
        groups, record = fold_groups(
            grouped.ids, grouped.groups, seqs, inputs, by=grouped.grouping, where=grouped.path
        )
    assert record["by"] == "column group" and record["groups"] == 4
    assert record["near_identical"]["constructs"] == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_near_identical_check_cut_short_says_so(tmp_path, monkeypatch, caplog):
    from types import SimpleNamespace

    from isoflow import finetune
    from isoflow.measurements import read_measurements

    table = read_measurements(_leak_table(tmp_path / "m.tsv"))
    seqs = [c.cassette for c in table.constructs]
    inputs = [SimpleNamespace(dna=seq) for seq in seqs]
    for bound, said in ((1000, "(the check covered part of the table: "), (10, "none found")):
        caplog.clear()
        monkeypatch.setattr(finetune, "NEAR_MAX_COMPARED", bound)
        with caplog.at_level("WARNING", logger="isoflow.finetune"):
            _, record = fold_groups(table.ids, table.groups, seqs, inputs, by="construct id")
        assert not record["near_identical"]["complete"]
        near = [
            m
            for m in (r.getMessage() for r in caplog.records)
            if "have a near-identical" in m or "near-identical check covered" in m
        ]
        assert len(near) == 1 and said in near[0]
        # how much it covered: constructs checked of the table's, in the log and in cv.html
        checked, total = record["near_identical"]["checked"], record["near_identical"]["total"]
        assert total == len(table.ids) and 0 <= checked < total
        assert f"{checked} of {total} constructs checked, stopped after " in near[0]
        assert (
            f"the near-identical check covered part of the table ({checked} of {total} "
            "constructs)" in finetune.grouping_note(record)
        )


# ------------------------------------------------------- groups sharing sequence

COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


def _rc(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def _naive_kmers(seqs, k=31):
    """Every sampled canonical k-mer by hand: (hash, sequence index), sorted."""
    from isoflow.finetune import SHARED_SAMPLE_BITS

    code = {b: i for i, b in enumerate("ACGT")}
    out = []
    for owner, seq in enumerate(seqs):
        for i in range(len(seq) - k + 1):
            word = seq[i : i + k].upper()
            if set(word) - set(BASES):
                continue
            fwd = int("".join(str(code[b]) for b in word), 4)
            rev = int("".join(str(code[b]) for b in _rc(word)), 4)
            h = min(fwd, rev) * 0x9E3779B97F4A7C15 % 2**64
            if h >> (64 - SHARED_SAMPLE_BITS) == 0:
                out.append((h, owner))
    return sorted(out)


def test_sampled_kmers_are_the_canonical_ones_by_hand(monkeypatch):
    """The doubled 2-bit codes, both strands, the sampling hash, k-mers over an N or across
    two sequences dropped, pieces joined at block edges: the same as one k-mer at a time."""
    from isoflow import finetune

    rng = np.random.default_rng(5)
    seqs = [
        "".join(rng.choice(list("ACGTacgtN" if i % 3 == 0 else "ACGT"), n))
        for i, n in enumerate([0, 30, 31, 32, 200, 500, 5, 1200, 64])
    ]
    seqs.append(_rc(seqs[5]))  # the other strand: the same k-mers
    expected = _naive_kmers(seqs)
    assert len(expected) > 100
    for block in (37, 64, finetune.SHARED_BLOCK):
        monkeypatch.setattr(finetune, "SHARED_BLOCK", block)
        hashes, owner = finetune._sampled_kmers(seqs)
        assert sorted(zip(hashes.tolist(), owner.tolist(), strict=True)) == expected
    own = lambda i: sorted(h for h, o in expected if o == i)  # noqa: E731
    assert own(5) == own(len(seqs) - 1)


def _reporter_table(seed=0):
    """Cassettes of a long shared reporter around 400-bp elements: element 0 in group
    ``e0`` (3 point variants), reversed in ``e0-flip``, one base longer in ``e0-long``;
    elements 1..9 one group each (3 variants)."""
    rng = np.random.default_rng(seed)
    random = lambda n: "".join(rng.choice(list(BASES), n))  # noqa: E731
    head, tail = random(1500), random(1500)
    elements = [random(400) for _ in range(10)]
    seqs, groups = [], []
    for name, element in [("e0-flip", _rc(elements[0])), ("e0-long", elements[0] + "A")] + [
        (f"e{i}", e) for i, e in enumerate(elements)
    ]:
        for _ in range(3):
            seqs.append(head + _variant(element, rng) + tail)
            groups.append(name)
    return seqs, groups


def test_a_flipped_or_longer_copy_in_another_group_shares_its_kmers():
    """The leak near_identical cannot see (other length, other strand), found; unrelated
    elements are not paired although most of every cassette is the same reporter."""
    seqs, groups = _reporter_table()
    assert near_identical(seqs, groups).constructs == []
    found = shared_kmers(seqs, groups)
    assert found.most == 6  # 12 groups: a k-mer in 7 or more is backbone
    assert {p[:2] for p in found.pairs} == {
        ("e0-flip", "e0-long"),
        ("e0-flip", "e0"),
        ("e0-long", "e0"),
    }
    assert all(share >= 0.8 for *_, share in found.pairs)
    # unrelated elements: most of their sampled k-mers are the same (the reporter), and
    # that counts for nothing
    from isoflow.finetune import _sampled_kmers

    hashes, owner = _sampled_kmers(seqs)
    e1, e2 = (
        set(hashes[np.isin(owner, np.flatnonzero(np.asarray(groups) == g))].tolist())
        for g in ("e1", "e2")
    )
    assert len(e1 & e2) >= 0.8 * min(len(e1), len(e2))
    # no k-mer at all (cassettes shorter than k), or under 3 groups: nothing to pair
    assert shared_kmers(["TTA", "GGA", "CCA", "N" * 40], list("abcd")).pairs == []
    assert shared_kmers(seqs[:6], groups[:6]).pairs == []
    # one group of the three: nothing left to pair
    merged = [("e0" if g.startswith("e0") else g) for g in groups]
    assert shared_kmers(seqs, merged).pairs == []


def test_shared_kmers_count_no_backbone_kmer_even_inside_an_element():
    """k-mers every construct holds (the reporter all begin and end with) count for none,
    also where an element repeats 1 kb of the reporter (e5 and e6, otherwise unrelated):
    the pairs and shares are those of the first prototype (bench/shared_kmers_prototype.py)
    on this table, pinned."""
    seqs, groups = _reporter_table()
    piece = seqs[0][200:1200]  # the reporter's, inside the elements of e5 and e6
    seqs = [
        s[:1700] + piece + s[1700:] if g in ("e5", "e6") else s
        for s, g in zip(seqs, groups, strict=True)
    ]
    assert shared_kmers(seqs, groups).pairs == [
        ("e0-long", "e0", 1.0),
        ("e0-flip", "e0", 0.932),
        ("e0-flip", "e0-long", 0.891),
    ]
    # the same with 1 kb of the reporter's 3' part inside e3 and e4: not a pair either
    seqs, groups = _reporter_table()
    piece = seqs[0][-1300:-300]
    seqs = [
        s[:1700] + piece + s[1700:] if g in ("e3", "e4") else s
        for s, g in zip(seqs, groups, strict=True)
    ]
    assert {p[:2] for p in shared_kmers(seqs, groups).pairs} == {
        ("e0-long", "e0"),
        ("e0-flip", "e0"),
        ("e0-flip", "e0-long"),
    }


def test_own_kmers_are_those_of_half_a_groups_constructs_counted_up_to_most_groups():
    """A group's own k-mers are those in at least half of its constructs (a's element x is
    in one of its two), and a k-mer owned by exactly ``most`` groups (2 of 3 groups) still
    counts: b's trimmed copy of x shares all of its k-mers with a."""
    rng = np.random.default_rng(9)
    x, y, z = ("".join(rng.choice(list(BASES), 400)) for _ in range(3))
    found = shared_kmers([x, y, x[5:], z], ["a", "a", "b", "c"])
    assert found.most == 2
    assert found.pairs == [("a", "b", 1.0)]


def test_near_identical_pairs_count_a_pair_exactly_near_mismatches_apart():
    from isoflow.finetune import NEAR_MISMATCHES, near_identical_pairs

    rng = np.random.default_rng(10)
    x = "".join(rng.choice(list("ACG"), 60))
    apart = {n: x[:-n] + "T" * n for n in (NEAR_MISMATCHES, NEAR_MISMATCHES + 1)}
    pairs = [("a", "b", 0.9)]
    near = near_identical_pairs([x, apart[NEAR_MISMATCHES]], ["a", "b"], pairs, [0, 1])
    assert near == {("a", "b")}
    assert near_identical_pairs([x, apart[NEAR_MISMATCHES + 1]], ["a", "b"], pairs, [0, 1]) == set()


def test_shared_kmers_when_every_kmer_is_backbone():
    """An enhancer multimer library (promoter + element x n + reporter, n = 2..6, one group
    each): every k-mer outside the shared begin and end repeats one inside them, so none is
    left once the backbone's are dropped; no pairs (this raised IndexError on an empty key)."""
    rng = np.random.default_rng(1)
    promoter, element, reporter = ("".join(rng.choice(list("ACGT"), n)) for n in (300, 120, 700))
    seqs = [promoter + element * n + reporter for n in range(2, 7)]
    assert shared_kmers(seqs, [f"x{n}" for n in range(2, 7)]).pairs == []


def test_each_pair_of_groups_is_named_by_one_warning(caplog):
    """Each construct its own group (no group column): e0's three point variants are
    near-identical pairs, named by the near-identical warning only; their pairs with the
    one-base-longer e0-long (not near-identical: another length) by the shared-sequence
    warning, which says it leaves the others out."""
    from types import SimpleNamespace

    seqs, groups = _reporter_table()
    keep = [i for i, g in enumerate(groups) if g == "e0"] + [groups.index("e0-long")]
    keep += [groups.index(f"e{i}") + 1 for i in range(1, 10)]
    seqs = [seqs[i] for i in keep]
    ids = [f"c{i}" for i in keep]  # c3 is e0-long; c6, c7, c8 are e0
    inputs = [SimpleNamespace(dna=s) for s in seqs]
    with caplog.at_level("WARNING", logger="isoflow.finetune"):
        _, record = fold_groups(ids, ids, seqs, inputs, by="construct id", where="t.tsv")
    near, alike = (r.getMessage() for r in caplog.records)
    assert near.startswith("t.tsv: 3 construct(s) have a near-identical construct")
    assert alike.startswith(
        "t.tsv: 3 pair(s) of groups share most of their own sequence (sampled 31-mers, either "
        "strand, any length: variants of one element, or one element flipped, trimmed or "
        "extended) besides 3 with near-identical constructs (above), e.g. "
    )
    named = {tuple(p[:2]) for p in record["shared_kmers"]["examples"]}
    assert named == {("c6", "c3"), ("c7", "c3"), ("c8", "c3")}
    assert all(f"{a} and {b} (" in alike for a, b in named)
    assert (record["shared_kmers"]["pairs"], record["shared_kmers"]["near_identical_pairs"]) == (
        6,
        3,
    )
    assert "; 3 pair(s) of groups share most of their sequence" in grouping_note(record)


def test_fold_groups_warn_of_groups_sharing_sequence(caplog):
    from types import SimpleNamespace

    from isoflow.finetune import grouping_note

    seqs, groups = _reporter_table()
    ids = [f"c{i}" for i in range(len(seqs))]
    inputs = [SimpleNamespace(dna=s) for s in seqs]
    with caplog.at_level("WARNING", logger="isoflow.finetune"):
        merged, record = fold_groups(ids, groups, seqs, inputs, by="column group", where="t.tsv")
    assert merged.tolist() == groups  # a warning only
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("t.tsv: 3 pair(s) of groups share most of their own sequence")
    assert "e0-flip and e0-long (" in warnings[0]
    assert warnings[0].endswith("put such constructs in one group")
    alike = record["shared_kmers"]
    assert alike["pairs"] == 3 and alike["k"] == 31 and alike["max_groups"] == 6
    assert [p[:2] for p in alike["examples"]] == [
        list(p[:2]) for p in shared_kmers(seqs, groups).pairs
    ]
    json.dumps(record)
    note = grouping_note(record)
    assert "3 pair(s) of groups share most of their sequence (either strand, any length)" in note


@pytest.mark.needs("shared")
def test_kircher_elements_sharing_sequence_are_the_overlapping_ones(shared_real):
    """Kircher et al. 2019: each element's cassettes (5 SNVs, as isoflow's reporter
    promoter; the -flip element cloned reversed) as one group: the pairs found are exactly
    the elements whose GRCh38 spans overlap (SORT1 / SORT1-flip / SORT1.2, LDLR / LDLR.2,
    PKLR-24h / 48h, ZRSh-13 / 13h2, TERT in four cell lines), none other."""
    import itertools

    from isoflow.constructs import Construct
    from isoflow.variants import (
        element_reference,
        element_substitutions,
        kircher_construct,
        read_kircher,
    )

    rows, _ = read_kircher(shared_real / "kircher_mpra" / "elements.tsv.gz")
    seqs, groups, spans = [], [], {}
    for name in sorted(set(rows["Element"])):
        mine = rows[rows["Element"] == name]
        element = element_reference(mine, name)
        strand = "-" if name.endswith("flip") else "+"
        construct = kircher_construct(element, strand)
        spans[name] = (element.chrom, element.start, element.end)
        subs, _, _ = element_substitutions(mine, element, strand)
        promoter = construct.parts["promoter"]
        for _, i, _, alt in subs[:: max(1, len(subs) // 5)][:5]:
            parts = {**construct.parts, "promoter": promoter[:i] + alt + promoter[i + 1 :]}
            seqs.append(Construct(name, parts).cassette)
            groups.append(name)
    overlapping = {
        (a, b)
        for a, b in itertools.combinations(sorted(spans), 2)
        if spans[a][0] == spans[b][0] and spans[a][1] <= spans[b][2] and spans[b][1] <= spans[a][2]
    }
    found = shared_kmers(seqs, groups)
    assert {tuple(sorted(p[:2])) for p in found.pairs} == overlapping
    assert ("SORT1", "SORT1-flip") in overlapping and len(overlapping) == 12


def test_constructs_the_window_makes_identical_share_a_group():
    """Cassettes that differ only where the DNA window does not reach are the same input
    to the model: one group."""
    from types import SimpleNamespace

    same = SimpleNamespace(dna="NNACGT", rna="ACGU", protein="M")
    inputs = [same, SimpleNamespace(**vars(same)), SimpleNamespace(dna="NNACGA", rna="A")]
    groups, record = fold_groups(["x", "y", "z"], ["x", "y", "z"], ["TTA", "GGA", "CCA"], inputs)
    assert groups.tolist() == ["x", "x", "z"] and record["identical"]["constructs"] == 2


def test_kmer_counts_by_hand():
    counts = kmer_counts(["ACGTA", "AANAA"], 2)
    index = {"AC": 1, "CG": 6, "GT": 11, "TA": 12, "AA": 0}
    assert counts.shape == (2, 16)
    assert {i for i in np.flatnonzero(counts[0])} == {index[k] for k in ("AC", "CG", "GT", "TA")}
    assert counts[1, index["AA"]] == 2 and counts[1].sum() == 2  # windows with N skipped


def test_ridge_recovers_a_linear_kmer_signal():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(120)]
    x = kmer_counts(seqs, 2)
    y = (x[:, 0] - x[:, 15])[:, None] + rng.normal(0, 0.1, (120, 1))
    train, test = np.arange(90), np.arange(90, 120)
    inner = (np.arange(70), np.arange(70, 90))
    predicted = ridge_predict(x, y, train, test, inner, [0.1, 1, 10])
    assert np.corrcoef(predicted[:, 0], y[test, 0])[0, 1] > 0.9


def test_zero_shot_maps_columns_to_tissues():
    preds = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    tissues = ["Liver", "Brain", "Muscle"]
    out = zero_shot(preds, tissues, ["Liver", "x", "y"], {"y": ["Brain", "Muscle"]})
    np.testing.assert_allclose(out, [[1.0, 2.0, 2.5], [0.0, 2.0, 3.0]])
    effect = zero_shot(preds, tissues, ["Muscle"], None, reference_predictions=preds - 1)
    np.testing.assert_allclose(effect, [[1.0], [1.0]])
    with pytest.raises(InputError, match="not a tissue of the bundle"):
        column_tissues(["a"], tissues, {"a": "Lung"})
    with pytest.raises(InputError, match="not measured columns"):
        column_tissues(["a"], tissues, {"b": "Liver"})


def test_zero_shot_matches_a_tissue_in_another_case_and_says_what_it_used():
    # `liver` against a bundle's `Liver` fell back to the mean over all tissues, unsaid
    from isoflow.finetune import zero_shot_note, zero_shot_sources

    preds = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    tissues = ["Liver", "Brain", "Muscle"]
    out = zero_shot(preds, tissues, ["liver", "MUSCLE", "x"])
    np.testing.assert_allclose(out, [[1.0, 3.0, 2.0], [0.0, 6.0, 2.0]])
    sources = zero_shot_sources(["liver", "Brain", "x", "y"], tissues, {"y": "Muscle"})
    assert sources == {
        "liver": {"tissues": ["Liver"], "from": "same name, other case"},
        "Brain": {"tissues": ["Brain"], "from": "same name"},
        "x": {"tissues": tissues, "from": "mean: no tissue of that name"},
        "y": {"tissues": ["Muscle"], "from": "finetune.zero_shot"},
    }
    # two tissues of that name in other cases: not guessed
    two = zero_shot_sources(["liver"], ["Liver", "LIVER", "Brain"], None)
    assert two["liver"]["from"] == "mean: several tissues of that name in other cases"
    assert zero_shot_note(sources, 3) == (
        "zero_shot per column: liver: Liver (same name, other case); Brain: Brain (same "
        "name); x: the mean over all 3 tissues (no tissue of that name); y: Muscle "
        "(finetune.zero_shot)."
    )


def test_the_cv_figure_draws_column_names_with_dollars_as_written(tmp_path):
    """The measured columns are the user's names: a pair of ``$`` was mathtext (a
    ValueError at the end of a whole cross-validation, or drawn as math)."""
    import html

    from isoflow.finetune import plot_cv

    columns = ["bad$\\frac$x", "price$5 and $6"]
    summary = pd.DataFrame(
        {
            "method": ["finetune", "finetune", "kmer_ridge", "kmer_ridge"],
            "column": columns * 2,
            "spearman_mean": [0.5, 0.4, 0.1, 0.2],
            "spearman_sd": [0.1, 0.1, float("nan"), 0.05],
        }
    )
    plot_cv(summary, tmp_path / "cv.svg")
    svg = (tmp_path / "cv.svg").read_text()
    assert "Oblique" not in svg  # mathtext sets the letters between two $ in italics
    for text in columns:
        assert f"<!-- {html.escape(text, quote=False)} -->" in svg, text


def test_settings_and_the_schema_name_the_same_keys():
    import yaml

    from isoflow.config import SCHEMA
    from isoflow.finetune import FINETUNE_DEFAULTS
    from isoflow.workflow import FINETUNE_NOT_SETTINGS

    section = yaml.safe_load(open(SCHEMA))["properties"]["finetune"]["properties"]
    assert set(section) == set(FINETUNE_DEFAULTS) | set(FINETUNE_NOT_SETTINGS)
    assert not any("default" in spec for spec in section.values())  # one home: Python


def test_settings_are_checked():
    assert finetune_settings({"mode": "lora"})["mode"] == "lora"
    with pytest.raises(InputError, match="finetune.mdoe: unknown setting"):
        finetune_settings({"mdoe": "lora"})
    with pytest.raises(InputError, match="is not one of"):
        finetune_settings({"mode": "full"})


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    """A tiny bundle (every modality through a cache, as the demo's) trained on the tiny
    sequence-dependent dataset."""
    from helpers.bundles import CACHED, tiny_bundles

    tmp = tmp_path_factory.mktemp("finetune_bundle")
    built = tiny_bundles(tmp, window=2048, max_epochs=4, cached={"dna": "enformer", **CACHED})
    return built["paths"][0]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # under 1.5 min quiet; load can make it 10x
def test_finetune_beats_zero_shot_and_shuffled_on_the_demo_table(demo_bundle, tmp_path):
    from isoflow.bundle import load_model
    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import OUTPUTS, finetune_table
    from isoflow.measurements import read_measurements

    table = write_demo_measurements(tmp_path / "m.tsv")
    out = tmp_path / "out"
    # the defaults (100 epochs, patience 10): a trial of these folds and seeds gave Spearman
    # 0.84 / 0.51 against 0.14 / 0.06 shuffled; 25 epochs on a 512-bp window learned nothing
    settings = {"folds": 4}
    result = finetune_table(table, demo_bundle, out, settings=settings, device="cpu")
    summary = result.summary.set_index(["method", "column"])["spearman_mean"]
    for column in ("cell_A", "cell_B"):
        assert summary["finetune", column] > summary["zero_shot", column] + 0.2
        assert summary["finetune", column] > summary["shuffled", column] + 0.2
    for name in OUTPUTS.values():
        assert (out / name).exists()
    cv = pd.read_csv(out / "cv.tsv", sep="\t")
    assert set(cv["method"]) == {
        "finetune",
        "zero_shot",
        "zero_shot_calibrated",
        "kmer_ridge",
        "shuffled",
    }
    assert len(cv) == 5 * 4 * 2  # methods x folds x columns
    assert cv[cv["method"] == "zero_shot"]["r2"].isna().all()  # other units
    assert cv[cv["method"] == "zero_shot_calibrated"]["r2"].notna().all()
    assert result.summary["best_baseline"].sum() == 2  # one per column
    model = load_model(out / "bundle", device="cpu")
    assert model.tissues == ["cell_A", "cell_B"]
    assert model.card["finetune"]["base"]["run"] == load_model(demo_bundle).card["run"]
    measured = read_measurements(table)
    assert len(result.predictions) == len(measured.ids) * 2
    assert not (tmp_path / ".out.partial").exists()


def test_lora_needs_an_nt_or_esm2_encoder_read_raw(demo_bundle, tmp_path):
    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import finetune_table

    table = write_demo_measurements(tmp_path / "m.tsv")
    with pytest.raises(InputError, match="mode lora needs a Nucleotide Transformer or ESM-2"):
        finetune_table(table, demo_bundle, tmp_path / "o", settings={"mode": "lora"})
    with pytest.raises(InputError, match="mode finetune_last needs an encoder read raw"):
        finetune_table(table, demo_bundle, tmp_path / "o", settings={"mode": "finetune_last"})


def _demo_inputs(table, window):
    from isoflow.constructs import construct_inputs
    from isoflow.measurements import read_measurements

    return [construct_inputs(c, window=window) for c in read_measurements(table).constructs]


def test_the_final_model_refits_every_construct_for_the_inner_splits_epochs(
    demo_bundle, tmp_path, monkeypatch
):
    """CV folds, then the final model: early stopping on an inner split of all the groups
    picks the epoch count, and a refit on every construct trains exactly that many epochs;
    the manifest's finetune record says so."""
    from isoflow import finetune
    from isoflow.bundle import load_model
    from isoflow.demo import write_demo_measurements
    from isoflow.measurements import read_measurements

    table = write_demo_measurements(tmp_path / "m.tsv")
    settings = {"folds": 2, "max_epochs": 4, "patience": 1, "shuffled_control": False}
    calls = []
    real_fit = finetune.Tuner.fit

    def recorded_fit(self, y, train, valid, seed, label="", epochs=None):
        network, count = real_fit(self, y, train, valid, seed, label, epochs=epochs)
        calls.append((label, train.copy(), valid.copy(), epochs, count, seed))
        return network, count

    monkeypatch.setattr(finetune.Tuner, "fit", recorded_fit)
    result = finetune.finetune_table(table, demo_bundle, tmp_path / "out", settings=settings)
    measured = read_measurements(table)
    n = len(measured.ids)
    (label, train, valid, fixed, best, seed), final = calls[-2], calls[-1]
    assert label == "final epochs" and fixed is None and 1 <= best <= 4
    inner = inner_split(measured.groups, 0.2, 0 + 2)  # seed + folds
    np.testing.assert_array_equal(train, inner[0])
    np.testing.assert_array_equal(valid, inner[1])
    assert len(train) < n
    assert final[0] == "final model"
    np.testing.assert_array_equal(final[1], np.arange(n))  # every construct trains
    assert len(final[2]) == 0 and final[3] == best and final[4] == best and final[5] == seed
    record = result.manifest["finetune"]
    assert record["epochs"] == best
    assert record["final_fit"] == {
        "constructs": n,
        "groups": measured.n_groups,
        "epochs": best,
        "epochs_from": {
            "train_constructs": len(inner[0]),
            "valid_constructs": len(inner[1]),
            "valid_groups": len(set(measured.groups[inner[1]].tolist())),
            "seed": 2,
        },
        "cassette_digests": finetune.cassette_digests([c.cassette for c in measured.constructs]),
    }
    card = load_model(tmp_path / "out" / "bundle", device="cpu").card
    assert card["finetune"]["final_fit"] == record["final_fit"]


def test_replicate_rows_never_straddle_a_fold_and_the_grouping_is_recorded(demo_bundle, tmp_path):
    """The leak end to end: without a group column, two rows of one cassette under other
    ids were two groups, so a fold could train on one and test the other; now they share a
    group (and so a fold), and the manifest, the report's table and predictions.tsv say
    how the folds were grouped."""
    from isoflow.finetune import finetune_table

    table = _leak_table(tmp_path / "m.tsv")
    settings = {"folds": 2, "max_epochs": 1, "shuffled_control": False}
    result = finetune_table(table, demo_bundle, tmp_path / "out", settings=settings)
    predictions = pd.read_csv(tmp_path / "out" / "predictions.tsv", sep="\t")
    by_id = predictions.set_index("construct_id")
    for e in range(4):
        assert by_id.loc[f"el{e}_rep1", "fold"] == by_id.loc[f"el{e}_rep2", "fold"]
        assert by_id.loc[f"el{e}_rep1", "group"] == by_id.loc[f"el{e}_rep2", "group"]
    record = result.manifest["finetune"]["grouping"]
    assert record["by"] == "construct id" and record["groups"] == 16
    assert record["near_identical"]["constructs"] == 20
    assert result.manifest["finetune"]["final_fit"]["groups"] == 16
    html = (tmp_path / "out" / "cv.html").read_text()
    assert "Folds grouped by construct id: 16 groups (20 given; 8 identical constructs" in html


def test_too_few_groups_once_identical_constructs_merge_is_one_line(demo_bundle, tmp_path):
    from isoflow.finetune import finetune_table

    table = tmp_path / "m.tsv"
    rows = ["id\tpromoter\tutr5\tcds\tutr3\ta"]
    rows += [
        f"{cid}\t{p}\tGCC\tATGAAATAA\tTT\t{v}"
        for cid, p, v in [("c1", "ACGTACGT", 1), ("c2", "ACGTACGT", 2), ("c3", "TTTTGGGG", 3)]
    ]
    table.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as err:
        finetune_table(table, demo_bundle, tmp_path / "out", settings={"folds": 3})
    assert str(err.value) == (
        f"{table}: 2 group(s) once identical constructs share one (from 3), for 3 "
        "cross-validation folds: each fold needs a group of its own; lower finetune.folds or "
        "add distinct constructs"
    )


@pytest.mark.parametrize("modalities", [["rna"], ["dna", "rna"]])
def test_a_start_that_reads_no_dna_gets_no_window_warning(
    tmp_path, monkeypatch, caplog, modalities
):
    """finetune_table places each construct as score does: a cassette past the DNA window
    is a warning only when the start bundle reads DNA (an RNA-only one reads none of it)."""
    import logging

    import isoflow.bundle
    from isoflow import finetune

    class Placed(Exception):
        pass

    manifest = {"modalities": modalities, "dna": {"window": 64}}
    monkeypatch.setattr(isoflow.bundle, "read_manifest", lambda bundle: manifest)
    monkeypatch.setattr(finetune, "run_finetune", lambda *a, **k: (_ for _ in ()).throw(Placed()))
    rng = np.random.default_rng(7)
    table = tmp_path / "m.tsv"
    rows = ["id\tpromoter\tutr5\tcds\tutr3\ta"]
    for i in range(4):
        promoter = "".join(rng.choice(list("ACGT"), 100))  # past the 64-nt window
        rows.append(f"c{i}\t{promoter}\tGCC\tATGAAATAA\tTT\t{i}")
    table.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING), pytest.raises(Placed):
        finetune.finetune_table(table, tmp_path / "bundle", tmp_path / "out", settings={"folds": 2})
    said = [r for r in caplog.records if "runs past the 64-nt DNA window" in r.getMessage()]
    assert len(said) == 4 * ("dna" in modalities)


# ---------------------------------------------------------------- reading options, as score's


def _polya_table(path, seed=3):
    """A measurement table whose constructs carry a polya part and a CDS without ATG (read
    only with allow_noncanonical_cds); another ``seed``: other promoters."""
    rng = np.random.default_rng(seed)
    lines = ["id\tpromoter\tutr5\tcds\tutr3\tpolya\ta"]
    for i in range(8):
        promoter = "".join(rng.choice(list(BASES), 120))
        cds = "GTGAAATAA" if i % 2 else "ATGAAATAA"  # GTG start: non-canonical
        lines.append(f"c{i}\t{promoter}\tGCCACC\t{cds}\tTTTT\tAATAAA\t{i % 3 + 0.1 * i}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def polya_tuned(demo_bundle, tmp_path_factory):
    """``isoflow finetune`` with polyA in the RNA, a polyA tail and non-canonical CDSs."""
    from isoflow.commands import main

    tmp = tmp_path_factory.mktemp("polya_tuned")
    table = _polya_table(tmp / "m.tsv")
    argv = ["finetune", str(table), "-m", str(demo_bundle), "-o", str(tmp / "out")]
    argv += ["--folds", "2", "--max-epochs", "1", "--device", "cpu"]
    assert main([*argv, "--polya-in-rna", "--polya-tail", "7", "--allow-noncanonical-cds"]) == 0
    return {"table": table, "bundle": tmp / "out" / "bundle", "argv": argv, "tmp": tmp}


def test_finetune_reads_and_places_constructs_with_scores_options(polya_tuned, capsys):
    """isoflow finetune takes isoflow score's construct options (one definition) and records
    them in the bundle; without --allow-noncanonical-cds the table is refused as score
    refuses it."""
    import argparse

    from isoflow.commands import main
    from isoflow.finetune import add_arguments
    from isoflow.score import add_arguments as score_arguments

    def flags(adder):
        parser = argparse.ArgumentParser()
        adder(parser)
        return {a.dest: (a.default, a.type, a.help) for a in parser._actions}

    tune, score = flags(add_arguments), flags(score_arguments)
    shared = ("background", "fill", "polya_in_rna", "polya_tail")
    shared += ("allow_noncanonical_cds", "aav", "aav_limit")
    for dest in shared:
        assert tune[dest] == score[dest], dest
    manifest = json.loads((polya_tuned["bundle"] / "manifest.json").read_text())
    assert manifest["finetune"]["construct_options"] == {
        "fill": "N",
        "background": None,
        "polya_in_rna": True,
        "polya_tail": 7,
        "allow_noncanonical_cds": True,
        "aav": False,
        "aav_limit": 4700,
    }
    capsys.readouterr()
    argv = [*polya_tuned["argv"][:5], str(polya_tuned["tmp"] / "again"), *polya_tuned["argv"][6:]]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow finetune: error: {polya_tuned['table']}:3: ")
    assert "--allow-noncanonical-cds" in err and "\n" not in err


def test_score_holds_a_finetuned_bundle_to_its_placement(polya_tuned, tmp_path, capsys):
    """isoflow score with a fine-tuned bundle: another RNA (no polyA part, another tail) or
    other DNA around the cassette than it was fine-tuned on is one line naming the option;
    the same placement scores."""
    from isoflow.commands import main

    bundle, table = polya_tuned["bundle"], polya_tuned["table"]
    base = ["score", "--model", str(bundle), "--constructs", str(table)]
    base += ["--allow-noncanonical-cds", "--device", "cpu", "--out"]
    capsys.readouterr()
    assert main([*base, str(tmp_path / "a"), "--polya-tail", "7"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (  # the fix in the flags' syntax (it said "--polya-in-rna on")
        f"isoflow score: error: {bundle / 'manifest.json'}:finetune.construct_options."
        "polya_in_rna: fine-tuned with --polya-in-rna, scored here without --polya-in-rna: "
        "the model would read another RNA than it learned from; score with --polya-in-rna "
        "(as fine-tuned), or fine-tune it on constructs placed as you score them"
    )
    assert (
        main([*base, str(tmp_path / "b"), "--polya-in-rna", "--polya-tail", "7", "--fill", "A"])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert (
        "finetune.construct_options.fill: fine-tuned with --fill N, scored here with --fill A"
    ) in err
    assert main([*base, str(tmp_path / "c"), "--polya-in-rna"]) == 1
    err = capsys.readouterr().err
    assert "fine-tuned with --polya-tail 7, scored here with --polya-tail 0" in err
    assert "; score with --polya-tail 7 (as fine-tuned), or" in err
    assert main([*base, str(tmp_path / "ok"), "--polya-in-rna", "--polya-tail", "7"]) == 0
    scores = pd.read_csv(tmp_path / "ok.scores.tsv", sep="\t")
    assert set(scores["tissue"]) == {"a"} and len(scores) == 8


def test_explain_and_design_hold_a_finetuned_bundle_to_its_placement(polya_tuned, tmp_path, capsys):
    """As isoflow score: explaining or designing constructs for a fine-tuned bundle with
    another placement than it learned from is refused before the model loads, in the words
    of the command (explain said "scored here ... score with") and naming design's
    background FASTA (it said "a background")."""
    from isoflow.commands import InputError, main
    from isoflow.constructs import read_constructs
    from isoflow.design import design_job

    bundle, table = polya_tuned["bundle"], polya_tuned["table"]
    (start, *_) = read_constructs(table, allow_noncanonical_cds=True)
    argv = ["explain", "--model", str(bundle), "--construct", str(table), "--id", start.id]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "e"), "--polya-tail", "7"]) == 1
    assert (
        "construct_options.polya_in_rna: fine-tuned with --polya-in-rna, explained here without "
        "--polya-in-rna: the model would read another RNA than it learned from; explain with "
        "--polya-in-rna (as fine-tuned), or fine-tune it on constructs placed as you explain them"
    ) in capsys.readouterr().err
    one = tmp_path / "start.tsv"  # the canonical start alone: design reads it strictly
    one.write_text("".join(table.read_text().splitlines(keepends=True)[:2]))
    background = tmp_path / "bg.fa"
    background.write_text(">bg\n" + "ACGT" * 1024 + "\n")
    with pytest.raises(InputError) as caught:
        design_job(
            one,
            [bundle],
            {},
            construct_id=start.id,
            target_tissues=["a"],
            background=background,
            polya_in_rna=True,
            polya_tail=7,
        )
    message = str(caught.value)
    assert "construct_options.background: fine-tuned without --background, designed here " in (
        message
    )
    assert f"here with --background {background} (sha256 " in message
    assert message.endswith(
        "; design without --background (as fine-tuned), or fine-tune it on constructs placed "
        "as you design them"
    )


def test_a_finetuned_bundle_without_its_placement_record_is_a_warning(
    polya_tuned, tmp_path, caplog
):
    import shutil

    from isoflow.bundle import _write_manifest
    from isoflow.score import score_file

    old = tmp_path / "old"
    shutil.copytree(polya_tuned["bundle"], old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["finetune"]["construct_options"]  # as isoflow finetune wrote it before
    _write_manifest(old, {k: v for k, v in manifest.items() if k != "digests"})
    with caplog.at_level("WARNING", logger="isoflow.score"):
        score_file(
            polya_tuned["table"],
            [old],
            {"tsv": tmp_path / "s.tsv"},
            allow_noncanonical_cds=True,
            device="cpu",
        )
    warned = [r.getMessage() for r in caplog.records if "does not record how" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{old / 'manifest.json'}: ")


def test_the_rule_passes_the_construct_options_it_is_given():
    from isoflow.workflow import FINETUNE_NOT_SETTINGS, finetune_construct_options

    assert finetune_construct_options({"finetune": {"table": "m.tsv", "fill": "N"}}) == {}
    assert finetune_construct_options({}) == {}
    section = {
        "polya_in_rna": True,
        "polya_tail": 0,
        "aav_limit": None,
        "allow_noncanonical_cds": False,
    }
    assert finetune_construct_options({"finetune": section}) == {
        "polya_in_rna": True,
        "polya_tail": 0,
        "allow_noncanonical_cds": False,
    }
    assert {"polya_in_rna", "polya_tail", "aav", "aav_limit"} <= set(FINETUNE_NOT_SETTINGS)


def test_a_fixed_epoch_fit_runs_exactly_that_many_epochs(demo_bundle, tmp_path, monkeypatch):
    from isoflow.bundle import load_model
    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import Tuner
    from isoflow.measurements import read_measurements

    table = write_demo_measurements(tmp_path / "m.tsv")
    values = read_measurements(table).values
    settings = finetune_settings({"max_epochs": 50, "patience": 1, "batch_size": 8})
    tuner = Tuner(load_model(demo_bundle, device="cpu"), _demo_inputs(table, 2048), 2, settings)
    batches = []
    real_batch = tuner._batch
    monkeypatch.setattr(
        tuner, "_batch", lambda net, index: batches.append(1) or real_batch(net, index)
    )
    every = np.arange(len(values))
    _, count = tuner.fit(values, every, every[:0], 0, "x", epochs=3)
    assert count == 3
    assert len(batches) == 3 * -(-len(values) // 8)  # 3 epochs of training batches, no validation
    with pytest.raises(ValueError, match="at least 1"):
        tuner.fit(values, every, every[:0], 0, "x", epochs=0)


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_finished_folds(demo_bundle, tmp_path, monkeypatch):
    from isoflow import finetune
    from isoflow.bundle import load_model
    from isoflow.demo import write_demo_measurements

    table = write_demo_measurements(tmp_path / "m.tsv")
    settings = {"folds": 3, "max_epochs": 3, "patience": 2, "shuffled_control": False}
    first = finetune.finetune_table(table, demo_bundle, tmp_path / "a", settings=settings)
    fits = []
    real_fit = finetune.Tuner.fit
    die_at = ["fold 2"]

    def recorded_fit(self, y, train, valid, seed, label="", **kw):
        fits.append(label)
        if die_at and label.startswith(die_at[0]):
            raise KeyboardInterrupt  # killed in the middle of fold 2
        return real_fit(self, y, train, valid, seed, label, **kw)

    monkeypatch.setattr(finetune.Tuner, "fit", recorded_fit)
    with pytest.raises(KeyboardInterrupt):
        finetune.finetune_table(table, demo_bundle, tmp_path / "b", settings=settings)
    assert (tmp_path / ".b.partial" / "fold0.npz").is_file()
    assert not (tmp_path / "b").exists()
    # a SIGKILL while fold 2 was saved leaves atomic_path's temporary: the rerun removes it
    leftover = tmp_path / ".b.partial" / ".fold1.npz.k3j2_x.tmp"
    leftover.write_bytes(b"PK")
    fits.clear()
    die_at.clear()
    second = finetune.finetune_table(table, demo_bundle, tmp_path / "b", settings=settings)
    # fold 1 read back; the final model: its epoch count, then the refit
    assert fits == ["fold 2 finetune", "fold 3 finetune", "final epochs", "final model"]
    assert not leftover.exists()
    pd.testing.assert_frame_equal(first.cv, second.cv)  # seeded: the same numbers
    assert first.manifest["finetune"] == second.manifest["finetune"]
    inputs = _demo_inputs(table, 2048)
    np.testing.assert_array_equal(  # the final refit too: the same bundle
        load_model(tmp_path / "a" / "bundle", device="cpu").predict(inputs),
        load_model(tmp_path / "b" / "bundle", device="cpu").predict(inputs),
    )
    # a rerun over an earlier result replaces it
    fits.clear()
    finetune.finetune_table(table, demo_bundle, tmp_path / "b", settings=settings)
    assert fits[-2:] == ["final epochs", "final model"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(finetune.OUTPUTS.values())


@pytest.mark.slow
def test_a_fold_left_zero_length_by_a_crash_is_computed_again(demo_bundle, tmp_path, monkeypatch):
    """A crash of the machine after a fold's rename, before its data reached the disk,
    leaves a zero-length fold{k}.npz: np.load failed on every rerun (EOFError). It is now
    computed again, and the results are the uninterrupted run's."""
    from isoflow import finetune
    from isoflow.demo import write_demo_measurements

    table = write_demo_measurements(tmp_path / "m.tsv")
    settings = {"folds": 3, "max_epochs": 3, "patience": 2, "shuffled_control": False}
    first = finetune.finetune_table(table, demo_bundle, tmp_path / "a", settings=settings)
    real_fit = finetune.Tuner.fit
    fits, die_at = [], ["fold 3"]

    def recorded_fit(self, y, train, valid, seed, label="", **kw):
        fits.append(label)
        if die_at and label.startswith(die_at[0]):
            raise KeyboardInterrupt  # killed in fold 3
        return real_fit(self, y, train, valid, seed, label, **kw)

    monkeypatch.setattr(finetune.Tuner, "fit", recorded_fit)
    with pytest.raises(KeyboardInterrupt):
        finetune.finetune_table(table, demo_bundle, tmp_path / "b", settings=settings)
    work = tmp_path / ".b.partial"
    (work / "fold0.npz").write_bytes(b"")  # renamed, never written
    whole = (work / "fold1.npz").read_bytes()
    (work / "fold1.npz").write_bytes(whole[: len(whole) // 2])  # cut short
    fits.clear()
    die_at.clear()
    second = finetune.finetune_table(table, demo_bundle, tmp_path / "b", settings=settings)
    assert fits[:3] == ["fold 1 finetune", "fold 2 finetune", "fold 3 finetune"]
    pd.testing.assert_frame_equal(first.cv, second.cv)


def test_a_finished_fold_is_read_only_when_whole(tmp_path):
    from isoflow.finetune import _finished_fold

    path = tmp_path / "fold0.npz"
    np.savez(path, finetune=np.arange(3.0), zero_shot=np.ones(3))
    whole = path.read_bytes()
    assert _finished_fold(path, ["finetune", "zero_shot"])["finetune"].tolist() == [0, 1, 2]
    assert _finished_fold(path, ["finetune", "kmer_ridge"]) is None  # another method set
    for broken in (b"", whole[: len(whole) // 2], whole[:-10]):
        path.write_bytes(broken)
        assert _finished_fold(path, ["finetune"]) is None


@pytest.mark.slow
def test_lora_and_finetune_last_write_bundles_that_predict_the_same(tmp_path):
    """RNA read raw by a tiny NT: LoRA adapters train, the bundle's manifest spec holds
    them, and the loaded bundle predicts as the trained model did (run_finetune checks it;
    here again from outside)."""
    import torch

    from helpers.bundles import tiny_bundles
    from isoflow.bundle import load_model
    from isoflow.constructs import construct_inputs
    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import finetune_table
    from isoflow.measurements import read_measurements

    built = tiny_bundles(tmp_path, window=512, max_epochs=1, cached={"protein": "esm2"})
    table = write_demo_measurements(tmp_path / "m.tsv")
    settings = {"mode": "lora", "lora": {"r": 2}, "folds": 2, "max_epochs": 2}
    settings["shuffled_control"] = False
    finetune_table(table, built["paths"][0], tmp_path / "out", settings=settings)
    model = load_model(tmp_path / "out" / "bundle", device="cpu")
    assert model.card["encoders"]["rna"]["spec"]["lora"] == {"r": 2}
    assert any("lora_A" in k for k in model.network.state_dict())
    inputs = [construct_inputs(c, window=512) for c in read_measurements(table).constructs]
    again = load_model(tmp_path / "out" / "bundle", device="cpu").predict(inputs[:6])
    np.testing.assert_allclose(model.predict(inputs[:6]), again, atol=1e-6)
    # finetune_last on the same bundle: the raw NT's last block trains, the rest stays
    settings = {"mode": "finetune_last", "finetune_last": 1, "folds": 2, "max_epochs": 2}
    settings["shuffled_control"] = False
    finetune_table(table, built["paths"][0], tmp_path / "last", settings=settings)
    start = load_model(built["paths"][0], device="cpu").network.encoders["rna"].state_dict()
    tuned = load_model(tmp_path / "last" / "bundle", device="cpu").network.encoders["rna"]
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, start[k])}
    assert changed and all(".layer.0." not in k for k in changed)  # only after block 0


def test_rule_layout_follows_the_finetune_config():
    from isoflow.workflow import FINETUNE_FILES, finetune_inputs, finetune_paths

    runs = {"a_s0": {}}
    assert finetune_paths({}, runs) == {}
    assert finetune_paths({"finetune": None}, runs) == {}
    config = {"finetune": {"table": "m.tsv", "model": "a_s0"}}
    assert set(finetune_paths(config, runs)) == set(FINETUNE_FILES)
    assert finetune_inputs(config) == {"table": "m.tsv", "model": "results/models/a_s0"}
    with pytest.raises(InputError, match="finetune.model: 'b' is not a configured run"):
        finetune_paths({"finetune": {"table": "m.tsv", "model": "b"}}, runs)


def test_finetune_help_works_without_torch():
    from helpers.commands import command_output

    out, torch_imported = command_output(["finetune", "--help"])
    assert "measurement table" in out and not torch_imported


def test_cli_bad_table_is_one_line_and_exit_1(tmp_path, capsys):
    from isoflow.commands import main

    table = tmp_path / "m.tsv"
    table.write_text("id\tpromoter\tutr5\tcds\tutr3\ta\nc1\tACGT\tGCC\tATGTAA\tTT\tlow\n")
    assert main(["finetune", str(table), "-m", str(tmp_path / "none"), "-o", "x"]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"isoflow finetune: error: {table}:2: construct 'c1': a 'low' is not a number "
        "(ASCII digits, '.', an optional sign and exponent: 12, -0.5, 1.5e3)"
    )


# ---------------------------------------------------------------- the output folder


def _earlier_result(folder, record=True):
    from isoflow.finetune import OUTPUTS

    (folder / OUTPUTS["bundle"]).mkdir(parents=True)
    manifest = {"run": "finetune-x", **({"finetune": {"epochs": 3}} if record else {})}
    (folder / OUTPUTS["bundle"] / "manifest.json").write_text(json.dumps(manifest))
    (folder / OUTPUTS["cv"]).write_text("method\n")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("holds_the_bundle", "would replace or write into the input"),
        ("is_the_bundle", "would replace or write into the input"),
        ("inside_the_bundle", "would replace or write into the input"),
        ("holds_the_table", "would replace or write into the input"),
        ("unrelated", "holds notes.txt, not an earlier fine-tuning output"),
        ("no_finetune_record", "is not an earlier fine-tuning output"),
        ("a_file", "an existing file, not a folder"),
        ("partial_with_strangers", "not only finished folds"),
    ],
)
def test_an_out_dir_that_is_not_an_earlier_result_is_refused_before_any_work(
    tmp_path, capsys, case, message
):
    """The result replaces -o whole (atomic_path): `-o results` must not wipe results/ and
    the start bundle in it. One line, exit 1, nothing removed, before the table or the
    bundle is read."""
    from isoflow.commands import main
    from isoflow.demo import write_demo_measurements

    results = tmp_path / "results"
    bundle = results / "models" / "run"  # never read: the guard answers first
    bundle.mkdir(parents=True)
    (bundle / "model.pt").write_text("weights")
    table = write_demo_measurements(tmp_path / "m.tsv")
    out = {
        "holds_the_bundle": results,
        "is_the_bundle": bundle,
        "inside_the_bundle": bundle / "ft",
        "holds_the_table": tmp_path,
    }.get(case, tmp_path / "ft")
    if case == "unrelated":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "no_finetune_record":
        _earlier_result(out, record=False)
    elif case == "a_file":
        out.write_text("mine")
    elif case == "partial_with_strangers":
        (tmp_path / ".ft.partial").mkdir()
        (tmp_path / ".ft.partial" / "notes.txt").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["finetune", str(table), "-m", str(bundle), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("isoflow finetune: error: ") and message in err and "\n" not in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_out_dir_absent_empty_or_an_earlier_result_is_accepted(tmp_path):
    from isoflow.finetune import check_out_dir, partial_dir

    bundle = tmp_path / "models" / "run"
    bundle.mkdir(parents=True)
    check_out_dir(tmp_path / "absent", [bundle])
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", [bundle])
    _earlier_result(tmp_path / "earlier")
    work = partial_dir(tmp_path / "earlier")
    work.mkdir()
    (work / "fingerprint.txt").write_text("x")
    (work / "fold0.npz").write_bytes(b"")
    check_out_dir(tmp_path / "earlier", [bundle])
    # a kill while a fold was written leaves atomic_path's temporary: still the run's own
    (work / ".fold1.npz.k3j2_x.tmp").write_bytes(b"")
    check_out_dir(tmp_path / "earlier", [bundle])


def test_write_bundle_copies_no_frozen_weights_to_outside_its_folder(tmp_path):
    """A base bundle whose manifest names encoders.*.weights outside it (load_model refuses
    that since; here the manifest is handed in directly): write_bundle copied the file to
    out / '../..', outside its output folder. Now one line, and nothing lands outside."""
    import types

    import torch

    from isoflow.finetune import write_bundle

    base = tmp_path / "pkg" / "base"
    (base / "encoders").mkdir(parents=True)
    torch.save({}, base / "model.pt")
    (tmp_path / "pkg" / "escape.pt").write_bytes(b"weights")
    card = {
        "run": "r",
        "tissues": ["t"],
        "encoders": {"rna": {"name": "x", "mode": "cached", "weights": "../escape.pt"}},
    }
    tuner = types.SimpleNamespace(model=types.SimpleNamespace(card=card, path=base))
    tuner.mode = "frozen"
    summary = pd.DataFrame({"method": ["finetune"], "column": ["a"], "spearman_mean": [0.5]})
    out = tmp_path / "out" / "x" / "ft"
    with pytest.raises(InputError, match="leads outside the bundle's folder") as caught:
        write_bundle(tuner, torch.nn.Linear(1, 1), out, ["a"], {}, summary, None, {"epochs": 1})
    assert "\n" not in str(caught.value) and "../escape.pt" in str(caught.value)
    assert not (tmp_path / "out" / "x" / "escape.pt").exists()


def _cv(rows):
    """A cv.tsv-like frame from (method, fold, column, spearman, pearson, r2) rows."""
    return pd.DataFrame(rows, columns=["method", "fold", "column", "spearman", "pearson", "r2"])


def test_calibrated_zero_shot_is_a_line_fitted_on_the_training_part():
    """The raw score is in log(1 + TPM); calibrated, the training part's line puts it in the
    table's units (here y = 3 + 2 x exactly: the test rows come out as their y)."""
    from isoflow.finetune import calibrate

    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [-4.0]])
    y = 3 + 2 * x
    train, test = np.arange(4), np.array([4, 5])
    np.testing.assert_allclose(calibrate(x, y, train, test), y[test])
    flat = np.ones_like(x)  # a constant score on the training part: its mean
    np.testing.assert_allclose(calibrate(flat, y, train, test), np.full((2, 1), y[train].mean()))


def test_summary_counts_the_folds_each_mean_averages():
    """A fold whose metric is undefined is left out of the mean: `folds` said K regardless,
    now each metric says how many folds it averages."""
    from isoflow.finetune import summarize

    cv = _cv(
        [
            ("finetune", 1, "a", 0.5, 0.5, 0.1),
            ("finetune", 2, "a", np.nan, np.nan, 0.2),  # a one-construct test fold
            ("finetune", 3, "a", 0.7, 0.6, np.nan),
        ]
    )
    row = summarize(cv).iloc[0]
    assert row["folds"] == 3
    assert (row["spearman_folds"], row["pearson_folds"], row["r2_folds"]) == (2, 2, 2)
    assert row["spearman_mean"] == pytest.approx(0.6)


def test_a_fold_testing_fewer_than_three_constructs_is_a_warning_naming_its_group(caplog):
    from isoflow.finetune import warn_small_folds

    groups = np.array(["big"] * 5 + ["tiny"] * 2)
    folds = [(np.arange(5, 7), np.arange(5)), (np.arange(5), np.arange(5, 7))]
    with caplog.at_level("WARNING", logger="isoflow.finetune"):
        assert warn_small_folds(folds, groups, "t.tsv") == [2]
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "t.tsv: fold 2 tests 2 construct(s) (group(s) tiny)" in record.getMessage()


def test_the_summary_compares_finetuning_with_each_method_fold_by_fold():
    """The demo's case: fine-tuning ahead of the k-mer ridge on average but not in every
    fold is no win; the html says so in one sentence, ahead in every fold by more than
    the spread is."""
    from isoflow.finetune import beats, sign_test_p, summarize, summary_html, verdicts

    ft = [0.90, 0.80, 0.85, 0.95]
    ridge = [0.85, 0.835, 0.836, 0.845]  # fine-tune - ridge: +0.05, -0.035, +0.014, +0.105
    calibrated = [0.2, 0.3, 0.1, 0.25]
    rows = []
    for k in range(4):
        rows += [
            ("finetune", k + 1, "cell_A", ft[k], ft[k], 0.5),
            ("zero_shot", k + 1, "cell_A", calibrated[k], calibrated[k], np.nan),
            ("zero_shot_calibrated", k + 1, "cell_A", calibrated[k], calibrated[k], 0.0),
            ("kmer_ridge", k + 1, "cell_A", ridge[k], ridge[k], 0.6),
        ]
    summary = summarize(_cv(rows)).set_index("method")
    assert summary.loc["kmer_ridge", "best_baseline"]
    assert not summary.loc["zero_shot_calibrated", "best_baseline"]
    diffs = np.subtract(ft, ridge)
    assert summary.loc["kmer_ridge", "delta_spearman_mean"] == pytest.approx(diffs.mean())
    assert summary.loc["kmer_ridge", "delta_spearman_sd"] == pytest.approx(diffs.std(ddof=1))
    assert summary.loc["kmer_ridge", "delta_folds_won"] == 3
    assert summary.loc["kmer_ridge", "delta_folds"] == 4
    assert summary.loc["kmer_ridge", "finetune_beats"] is False
    # ahead in all 4 folds, beyond the spread: 4 folds cannot tell (4/4 is p = 1/16)
    assert summary.loc["zero_shot_calibrated", "finetune_beats"] is None
    summary = summary.reset_index()
    # every row fine-tuning leads in 4 of 4 folds gets the caveat: zero-shot too, not only
    # the best baseline and calibrated zero-shot (its "+0.64 (4/4)" read as a win)
    sentence, few, few_raw = verdicts(summary)
    assert few_raw.startswith("fine-tuning leads zero_shot on cell_A in every fold")
    assert few_raw.endswith(
        "4 folds cannot tell: all 4 won is p = 1/16; use 5 or more folds (finetune.folds)."
    )
    assert sentence == (
        f"fine-tuning does not beat kmer_ridge on cell_A: Δρ {diffs.mean():+.2f} ± "
        f"{diffs.std(ddof=1):.2f}, 3/4 folds won."
    )
    assert few.startswith("fine-tuning leads zero_shot_calibrated on cell_A in every fold")
    assert few.endswith(
        "4 folds cannot tell: all 4 won is p = 1/16; use 5 or more folds (finetune.folds)."
    )
    page = summary_html(summary)
    assert sentence in page
    zero = page.split("<td>zero_shot</td>")[1].split("</tr>")[0]
    assert zero.count("<td>n/a</td>") == 1  # raw zero-shot R²: other units
    # the page states the rule beats() applies (it said "wins every fold": 9/10 beats too)
    assert "wins every fold" not in page
    assert "the folds it wins pass a one-sided sign test (p ≤ 0.05: at least 5 folds" in page
    assert "the mean difference is more than one sd above zero" in page
    # the rule: a one-sided sign test of the folds won (p <= 0.05) and the mean one sd
    # above zero; under 5 folds even every fold won cannot tell
    assert beats([0.2, 0.25, 0.3, 0.22, 0.24]) is True  # 5/5: p = 1/32
    assert beats([0.2, 0.25, 0.3, 0.22]) is None  # 4/4: p = 1/16
    assert beats([0.01, 0.012]) is None  # 2/2 by a hair was a win
    assert beats([0.5, 0.01, 0.6, 0.02]) is False  # every fold, but within the spread
    assert beats([0.3] * 9 + [-0.001]) is True  # 9/10: one small loss no longer vetoes
    assert beats([0.3] * 8 + [-0.001] * 2) is False  # 8/10: p = 0.055
    assert beats([0.3]) is None and beats([-0.3]) is False
    assert sign_test_p(5, 5) == 1 / 32 and sign_test_p(9, 10) == 11 / 1024


def test_a_column_without_a_spearman_in_any_fold_is_summarised_not_a_keyerror():
    """Values constant within every test fold (a per-family value under leave-one-group-out)
    leave the column without a Spearman in any fold: pivot_table dropped it and the lookup
    raised a KeyError after every fold had trained."""
    from isoflow.finetune import summarize, verdicts

    rows = []
    for k in range(3):
        rows += [
            ("finetune", k + 1, "cell_C", np.nan, np.nan, np.nan),
            ("kmer_ridge", k + 1, "cell_C", np.nan, np.nan, np.nan),
            ("finetune", k + 1, "cell_A", 0.5, 0.5, 0.2),
            ("kmer_ridge", k + 1, "cell_A", 0.4, 0.4, 0.1),
        ]
    summary = summarize(_cv(rows))
    part = summary[(summary["column"] == "cell_C") & (summary["method"] == "kmer_ridge")]
    assert int(part["delta_folds"].iloc[0]) == 0 and part["finetune_beats"].iloc[0] is False
    assert not any("cell_C" in sentence for sentence in verdicts(summary))  # nothing to say


def test_the_finetuned_card_says_the_bundle_was_refit_on_every_construct(tmp_path):
    """The card pointed to metrics.cv as if they measured this network; it was refit on
    every construct, so CV estimates the procedure."""
    import types

    import torch

    from isoflow.finetune import write_bundle

    base = tmp_path / "base"
    base.mkdir()
    torch.save({}, base / "model.pt")
    card = {"run": "r", "tissues": ["t"], "encoders": {}}
    tuner = types.SimpleNamespace(model=types.SimpleNamespace(card=card, path=base))
    tuner.mode, tuner.device = "frozen", torch.device("cpu")
    summary = pd.DataFrame({"method": ["finetune"], "column": ["a"], "spearman_mean": [0.5]})
    fit = {"epochs": 7, "constructs": 48, "groups": 8}
    write_bundle(tuner, torch.nn.Linear(1, 1), tmp_path / "ft", ["a"], {}, summary, None, fit)
    text = (tmp_path / "ft" / "README.md").read_text()
    assert "refit on all 48 constructs (8 groups) for 7 epoch(s)" in text
    assert "`metrics.mean` the CV mean" in text and "not this network" in text


@pytest.mark.parametrize(
    ("lr", "match"),
    [(1e30, "fold 1 finetune: (training diverged|no epoch gave a finite)"), (30.0, "diverged")],
)
def test_a_diverging_finetune_is_one_line_naming_the_lr(demo_bundle, tmp_path, lr, match):
    """lr 1e30 crashed in load_state_dict(None); lr 30 finished with R² -1e17 and wrote a
    bundle. Both now stop at the fit with one line naming finetune.lr and the fold."""
    from isoflow.bundle import load_model
    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import Tuner

    table = write_demo_measurements(tmp_path / "m.tsv")
    from isoflow.measurements import read_measurements

    values = read_measurements(table).values
    settings = finetune_settings({"max_epochs": 3, "patience": 2, "lr": lr})
    tuner = Tuner(load_model(demo_bundle, device="cpu"), _demo_inputs(table, 2048), 2, settings)
    every = np.arange(len(values))
    with pytest.raises(InputError, match=match) as caught:
        tuner.fit(values, every[:36], every[36:], 0, "fold 1 finetune")
    assert "finetune.lr" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(InputError, match="final model: training diverged"):
        tuner.fit(values, every, every[:0], 0, "final model", epochs=2)


def test_a_finetuned_bundle_records_the_cpu_kernels_of_its_fine_tuning(tmp_path):
    """The fine-tuned network was fitted and checked under this process's CPU kernels,
    not the start bundle's: its manifest records these (load_model warns against them)."""
    import types

    import torch

    from isoflow.bundle import CPU_KERNELS, kernels_record
    from isoflow.finetune import write_bundle

    base = tmp_path / "base"
    base.mkdir()
    torch.save({}, base / "model.pt")
    other = {"choice": "native", "cpu_capability": "AVX512"}
    card = {"run": "r", "tissues": ["t"], "encoders": {}, CPU_KERNELS: other}
    tuner = types.SimpleNamespace(model=types.SimpleNamespace(card=card, path=base))
    tuner.mode, tuner.device = "frozen", torch.device("cpu")
    summary = pd.DataFrame({"method": ["finetune"], "column": ["a"], "spearman_mean": [0.5]})
    out = tmp_path / "ft"
    fit = {"epochs": 1, "constructs": 4, "groups": 4}
    args = (torch.nn.Linear(1, 1), out, ["a"], {}, summary, None, fit)
    manifest = write_bundle(tuner, *args)
    assert manifest[CPU_KERNELS] == kernels_record(torch.device("cpu")) != other
    assert json.loads((out / "manifest.json").read_text())[CPU_KERNELS] == manifest[CPU_KERNELS]
    tuner.device = torch.device("cuda")  # fitted on a GPU: no CPU kernels made its numbers
    assert CPU_KERNELS not in write_bundle(tuner, *(args[:1] + (tmp_path / "g",) + args[2:]))


def test_finetuning_a_finetuned_bundle_holds_it_to_its_placement(polya_tuned, capsys, monkeypatch):
    """isoflow finetune started from a fine-tuned bundle: constructs placed otherwise than
    it learned from are refused before any work, as score refuses them (a --polya-tail 30
    run on a bundle fine-tuned with 7 went through); placed the same, the new bundle keeps
    the start's finetune record as lineage, its path absolute though -m was relative (the
    refusal's fix names it: relative, it named a folder of another working directory)."""
    from isoflow.commands import main

    bundle, tmp = polya_tuned["bundle"], polya_tuned["tmp"]
    base = json.loads((bundle / "manifest.json").read_text())["finetune"]["base"]["path"]
    argv = ["finetune", str(polya_tuned["table"]), "-m", str(bundle)]
    argv += ["--folds", "2", "--max-epochs", "1", "--device", "cpu", "--allow-noncanonical-cds"]
    capsys.readouterr()
    out = tmp / "again_tail"
    assert main([*argv, "-o", str(out), "--polya-in-rna", "--polya-tail", "30"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"isoflow finetune: error: {bundle / 'manifest.json'}:finetune.construct_options."
        "polya_tail: fine-tuned with --polya-tail 7, fine-tuned here with --polya-tail 30: the "
        "model would read another RNA than it learned from; fine-tune with --polya-tail 7 (as "
        f"fine-tuned), or fine-tune its base bundle ({base}) instead"
    )
    assert not out.exists()
    out = tmp / "again_same"
    table = _polya_table(tmp / "new.tsv", seed=4)  # new constructs: its own would leak
    argv[1] = str(table)
    monkeypatch.chdir(tmp)
    argv[3] = str(bundle.relative_to(tmp))
    assert main([*argv, "-o", str(out), "--polya-in-rna", "--polya-tail", "7"]) == 0
    start = json.loads((bundle / "manifest.json").read_text())["finetune"]
    lineage = json.loads((out / "bundle" / "manifest.json").read_text())["finetune"]["base"]
    assert lineage["path"] == str(bundle.resolve()) and lineage["finetune"] == start
    # the zero-shot tissue each column was scored against: recorded and said in cv.html
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["finetune"]["zero_shot_tissues"] == {
        "a": {"tissues": ["a"], "from": "same name"}
    }
    assert "zero_shot per column: a: a (same name)." in (out / "cv.html").read_text()


def test_the_manifest_records_the_table_as_source_and_the_demo_figure_is_stamped(
    demo_bundle, tmp_path
):
    """finetune.source is the measurement table (path, sha256, demo), the lineage a
    fine-tuned bundle is judged by, and a demo run's cv.svg carries the demo stamp: the
    zero-shot log loop once rebound ``source`` to the last column's zero-shot record, so the
    manifest recorded {tissues, from} and the stamp was lost."""
    import hashlib

    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import finetune_table
    from isoflow.report.figures import DEMO_MARK

    table = write_demo_measurements(tmp_path / "m.tsv")
    settings = {"folds": 2, "max_epochs": 1, "shuffled_control": False}
    out = tmp_path / "out"
    finetune_table(table, demo_bundle, out, settings=settings, device="cpu", demo=True)
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["finetune"]["source"] == {
        "table": str(table),
        "sha256": hashlib.sha256(Path(table).read_bytes()).hexdigest(),
        "demo": True,
    }
    assert DEMO_MARK in (out / "cv.svg").read_text()


def test_finetuning_a_finetuned_bundle_on_constructs_it_saw_is_refused(
    polya_tuned, tmp_path, capsys, caplog
):
    """Fine-tuning a fine-tuned bundle on its own table, or a superset (v2 = v1 + new
    constructs), gave "held-out" CV over constructs the start trained on, silently: one line
    naming how many, from the cassettes its manifest records, before any work; a start that
    records none is refused on its own table by sha256, else a warning. cv.html says a
    fine-tuned start's zero-shot is in its table's units, not log(1 + TPM)."""
    import shutil

    from isoflow.bundle import _write_manifest
    from isoflow.commands import main
    from isoflow.finetune import cassette_digests, check_held_out
    from isoflow.measurements import read_measurements

    bundle, table = polya_tuned["bundle"], polya_tuned["table"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    seen = read_measurements(table, allow_noncanonical_cds=True)
    assert manifest["finetune"]["final_fit"]["cassette_digests"] == cassette_digests(
        [c.cassette for c in seen.constructs]
    )
    superset = tmp_path / "v2.tsv"
    old_rows = table.read_text().splitlines()
    new_rows = _polya_table(tmp_path / "new.tsv", seed=4).read_text().splitlines()
    superset.write_text("\n".join([*new_rows, "old" + old_rows[2]]) + "\n")  # c1 as oldc1
    argv = ["finetune", "-m", str(bundle), "--folds", "2", "--max-epochs", "1"]
    argv += ["--device", "cpu", "--allow-noncanonical-cds", "--polya-in-rna", "--polya-tail", "7"]
    cases = ((table, "8 of 8 constructs (e.g. c0)"), (superset, "1 of 9 constructs (e.g. oldc1)"))
    for given, count in cases:
        capsys.readouterr()
        out = tmp_path / f"out_{given.stem}"
        assert main([*argv[:1], str(given), *argv[1:], "-o", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"isoflow finetune: error: {given}: {count} are cassettes the "), err
        assert f"start bundle {bundle} was already fine-tuned on" in err and "\n" not in err
        assert "fine-tune its base bundle" in err and not out.exists()
    # a start written before the cassettes were recorded: its own table by its sha256
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    del manifest["finetune"]["final_fit"]["cassette_digests"]
    _write_manifest(old, {k: v for k, v in manifest.items() if k != "digests"})
    capsys.readouterr()
    assert main([*argv[:1], str(table), "-m", str(old), *argv[3:], "-o", str(tmp_path / "o")]) == 1
    assert "was fine-tuned on this very table (finetune.source.sha256)" in capsys.readouterr().err
    new = read_measurements(tmp_path / "new.tsv", allow_noncanonical_cds=True)
    cassettes = [c.cassette for c in new.constructs]
    source = {"table": "new.tsv", "sha256": "0" * 64}
    with caplog.at_level("WARNING", logger="isoflow.finetune"):
        check_held_out(old, manifest, new.ids, cassettes, source)
    assert "records no cassettes it was fine-tuned on" in caplog.text
    # new constructs: fine-tuned, the zero-shot's units said as the start's table's
    out = tmp_path / "fresh"
    assert main([*argv[:1], str(tmp_path / "new.tsv"), *argv[1:], "-o", str(out)]) == 0
    report = (out / "cv.html").read_text()
    assert f"in the units of {table}, the table the start bundle was fine-tuned on: no R²" in (
        report
    )
    assert "log(1 + TPM)" not in report


def _vary_table(varying_groups, n_groups=6, per_group=2):
    """Ids, inputs, values (n, 1), groups, seqs: distinct random cassettes, every value 0
    but 1, 2, ... in the members of ``varying_groups``."""
    from types import SimpleNamespace

    rng = np.random.default_rng(5)
    groups = np.asarray([f"g{i // per_group}" for i in range(n_groups * per_group)], dtype=object)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in groups]
    values = np.zeros((len(groups), 1))
    hit = np.isin(groups, list(varying_groups))
    values[hit, 0] = np.arange(1, hit.sum() + 1)
    ids = [f"c{i}" for i in range(len(groups))]
    return ids, [SimpleNamespace(rna=s) for s in seqs], values, groups, seqs


def test_a_column_varying_in_one_test_fold_is_refused_before_any_embedding(tmp_path):
    # two groups off the common value, both in fold 1: its Spearman came from 1 of 3 folds
    # (summary.tsv spearman_folds=1) and the run ended rc 0; now refused before the bundle
    # is even read (none here)
    from isoflow.finetune import check_folds_vary, run_finetune

    folds = grouped_folds(_vary_table([])[3], 3, 0)
    same_fold = sorted(set(_vary_table([])[3][folds[0][1]].tolist()))
    ids, inputs, values, groups, seqs = _vary_table(same_fold)
    with pytest.raises(InputError) as err:
        run_finetune(
            tmp_path / "no_bundle", ids, inputs, values, ["a"], groups, seqs, tmp_path / "out",
            settings={"folds": 3, "seed": 0}, source={"table": "t.tsv"},
        )  # fmt: skip
    assert str(err.value) == (
        "t.tsv: a: its values vary within 1 of 3 test folds (every other fold holds one "
        "value), so cross-validation ranks it in at most one fold: add constructs whose "
        "values differ in other groups, or leave the column out (--columns)"
    )
    # varying in two of the three folds: a warning, and the fit goes on
    other = sorted(set(groups[folds[1][1]].tolist()))[:1]
    values = _vary_table(same_fold[:1] + other)[2]
    assert check_folds_vary(values, ["a"], folds) == [2]


def test_a_metric_defined_in_fewer_folds_than_run_is_a_warning_in_the_log_and_html(caplog):
    from isoflow.finetune import summarize, summary_html, undefined_fold_notes

    cv = _cv(
        [
            ("finetune", 1, "a", 0.5, 0.5, 0.1),
            ("finetune", 2, "a", np.nan, np.nan, np.nan),  # a constant test fold
            ("finetune", 1, "b", 0.5, 0.5, 0.1),
            ("finetune", 2, "b", 0.6, 0.6, 0.2),
        ]
    )
    summary = summarize(cv)
    notes = undefined_fold_notes(summary)
    assert notes == [
        "a: Spearman defined in 1 of 2 folds, Pearson defined in 1 of 2 folds, R² defined in "
        "1 of 2 folds (a test fold with one value, or under 2 constructs, ranks nothing): its "
        "means are over those folds only"
    ]
    assert f"<p><b>{notes[0]}</b></p>" in summary_html(summary)


def test_a_value_that_overflows_float32_once_standardised_names_construct_and_column(tmp_path):
    # 1e300 ended, after every embedding, as "no epoch gave a finite inner-validation MSE;
    # lower finetune.lr"; now refused before the bundle is read (none here)
    from isoflow.finetune import check_targets, run_finetune

    ids, inputs, values, groups, seqs = _vary_table([f"g{i}" for i in range(6)])
    check_targets(values, ids, ["a"])
    values[4, 0] = 1e300
    with pytest.raises(InputError) as err:
        run_finetune(
            tmp_path / "no_bundle", ids, inputs, values, ["a"], groups, seqs, tmp_path / "out",
            settings={"folds": 3, "seed": 0}, source={"table": "t.tsv"},
        )  # fmt: skip
    assert str(err.value).startswith(
        "t.tsv: construct 'c4': a 1e+300 cannot be standardised in float32, in which "
        "fine-tuning trains"
    )


def test_an_unknown_zero_shot_tissue_is_refused_before_the_model_loads(
    demo_bundle, tmp_path, monkeypatch
):
    # `--zero-shot cell_A=Livr` was refused only after every construct was embedded (37 s)
    import isoflow.bundle
    from isoflow.demo import write_demo_measurements
    from isoflow.finetune import finetune_table

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the zero-shot tissues were checked")

    monkeypatch.setattr(isoflow.bundle, "load_model", loaded)
    table = write_demo_measurements(tmp_path / "m.tsv")
    with pytest.raises(InputError) as err:
        finetune_table(
            table, demo_bundle, tmp_path / "out", settings={"zero_shot": {"cell_A": "Livr"}}
        )
    assert str(err.value).startswith("<input>:finetune.zero_shot.cell_A: 'Livr' is not a tissue")
