"""isoflow explain: ISM equals brute-force predictions, the re-encode-only path equals the
full one, attention shares by region, the CLI end to end -- on a tiny trained bundle."""

import numpy as np
import pandas as pd
import pytest

from helpers.bundles import tiny_bundles
from isoflow.bundle import CHECK_TOLERANCE
from isoflow.constructs import Construct

# The bundle: helpers.bundles (DNA read raw, RNA and protein through frozen caches).
WINDOW = 512
# |ISM - one-by-one predict()| and |re-encode-only - full path|: the batches differ
# (padding, batch size), so float32 sums round differently, and a last-bit difference can
# flip the float16 a cached embedding is rounded to. Measured up to 1.7e-5 (log1p TPM) on
# this bundle (a protein batched with shorter ones); the bound is the bundle export check's
# float32 one, for the same reason.
TOLERANCE = CHECK_TOLERANCE["float32"]

CDS = "ATG" + "AAA" + "TGG" + "CTG" + "GAA" + "TAC" + "AGC" + "TAA"


def _construct(seed=3):
    rng = np.random.default_rng(seed)

    def random(n):
        return "".join(rng.choice(list("ACGT"), n))

    parts = {"promoter": random(60), "utr5": random(20), "cds": CDS, "utr3": random(30)}
    return Construct("c1", parts, source="test")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    built = tiny_bundles(tmp, window=WINDOW)
    return {
        "tmp": tmp,
        "path": built["paths"][0],
        "dataset": built["dataset"],
        "fasta": built["fasta"],
    }


@pytest.fixture(scope="module")
def model(bundle):
    from isoflow.bundle import load_model

    return load_model(bundle["path"], device="cpu")


# ---------------------------------------------------------------- mutants (no model)


def test_construct_sites_map_onto_window_and_rna():
    from isoflow.explain import construct_subject, mutate

    c = _construct()
    s = construct_subject(c, window=WINDOW)
    for site in range(len(c.cassette)):
        w, r = s.window_pos[site], s.rna_pos[site]
        assert s.dna[w] == c.cassette[site]
        if r >= 0:
            assert s.rna[r] == c.cassette[site]
    assert (s.rna_pos >= 0).sum() == len(c.rna)
    # a promoter base changes the DNA only; a UTR base DNA and RNA
    m = mutate(s, 0, "A" if c.cassette[0] != "A" else "C")
    assert m.changed == ("dna",) and m.consequence == "dna_only"
    utr = c.spans["utr5"][0]
    assert mutate(s, utr, "A" if c.cassette[utr] != "A" else "C").changed == ("dna", "rna")


def test_cds_substitutions_retranslate_and_a_new_stop_truncates():
    from isoflow.explain import construct_subject, mutate

    c = _construct()
    s = construct_subject(c, window=WINDOW)
    cds0 = c.spans["cds"][0]
    assert s.protein == "MKWLEYS"
    # AAA (K, codon 2) -> TAA: stop, protein cut before it
    m = mutate(s, cds0 + 3, "T")
    assert m.consequence == "nonsense" and m.inputs.protein == "M"
    assert "protein" in m.changed
    # CTG (L) -> CTA: synonymous, protein kept and not re-encoded
    m = mutate(s, cds0 + 11, "A")
    assert m.consequence == "synonymous" and m.inputs.protein == s.protein
    assert m.changed == ("dna", "rna")
    # GAA (E) -> GAC (D)
    m = mutate(s, cds0 + 14, "C")
    assert m.consequence == "missense" and m.inputs.protein == "MKWLDYS"
    # the stop TAA -> TAC: one more residue, no read-through
    m = mutate(s, cds0 + len(CDS) - 1, "C")
    assert m.consequence == "stop_lost" and m.inputs.protein == "MKWLEYSY"
    # ATG -> TTG: a lost start is read as the codon it became (no other start searched)
    m = mutate(s, cds0, "T")
    assert m.consequence == "missense" and m.inputs.protein == "LKWLEYS"


def test_regions_by_part_and_span():
    from isoflow.errors import InputError
    from isoflow.explain import construct_subject, region_sites

    c = _construct()
    s = construct_subject(c, window=WINDOW)
    a, b = c.spans["cds"]
    assert list(region_sites(s, "cds")) == list(range(a, b))
    assert list(region_sites(s, "5-9")) == [5, 6, 7, 8]
    assert len(region_sites(s, None)) == len(c.cassette)
    with pytest.raises(InputError, match="neither START-END nor a part"):
        region_sites(s, "enhancer")
    with pytest.raises(InputError, match="holds no base"):
        region_sites(s, "900-950")


def test_a_polya_no_input_reads_names_the_file_why_and_the_flag():
    """It was `<input>:c1: region polya holds no base to mutate`: no file, no reason."""
    from isoflow.errors import InputError
    from isoflow.explain import construct_subject, region_sites

    c = _construct()
    parts = {**c.parts, "utr3": "ACGT" * 80, "polya": "AATAAA" + "CA" * 17}  # past the window
    c = Construct("c1", parts, source="cassettes.tsv:2")
    s = construct_subject(c, window=WINDOW)
    last = c.tss + WINDOW // 2  # the window ends WINDOW // 2 past the TSS
    assert last < c.spans["polya"][0]
    with pytest.raises(InputError) as err:
        region_sites(s, "polya")
    assert str(err.value) == (
        "cassettes.tsv:2:c1: region polya holds no base to mutate: of its 40 base(s), 40 lie "
        f"outside both the DNA window (cassette offsets 0-{last}, 0-based half-open) and the "
        "RNA, so no input reads them; --polya-in-rna puts the polyA part in the RNA, where it "
        "is mutable"
    )
    s = construct_subject(c, window=WINDOW, polya_in_rna=True)
    assert list(region_sites(s, "polya")) == list(range(*c.spans["polya"]))


def test_the_ism_figure_draws_an_id_with_dollars_as_written(tmp_path):
    """A pair of ``$`` in an id or tissue was mathtext: ``bad$\\frac$x`` a ValueError once
    the model work was done, ``price$5 and $6`` drawn as math."""
    import html

    from isoflow.explain import construct_subject, plot_ism, region_sites
    from isoflow.report.figures import save_figure

    construct = _construct()
    for cid in ("bad$\\frac$x", "price$5 and $6"):
        s = construct_subject(Construct(cid, construct.parts, source="test"), window=WINDOW)
        sites = region_sites(s, "utr5")
        summary = pd.DataFrame(
            {
                "position": s.coord[sites],
                "tissue": "Lu$ng$",
                "score": np.linspace(-1, 1, len(sites)),
                "ref": s.ref[sites],
            }
        )
        path = tmp_path / "ism.svg"
        save_figure(plot_ism(summary, s, tissues=("Lu$ng$",)), path)
        svg = path.read_text()
        assert "Oblique" not in svg  # mathtext sets the letters between two $ in italics
        title = f"ISM of {cid}: ISM × reference, mean-centred per position"
        assert f"<!-- {html.escape(title, quote=False)} -->" in svg


def test_nt_and_esm_token_spans_count_the_encoders_tokens():
    """token_spans mirrors the tokenisers: as many spans as tokens, for sequences with N,
    a ragged 3' end, and past the token budget in both truncation directions."""
    from isoflow.explain import token_spans
    from isoflow.model.encoders import build_encoder

    rng = np.random.default_rng(0)
    for truncate in ("keep_5prime", "keep_3prime"):
        spec = {"source": "tiny", "max_len": 9, "truncate": truncate}
        nt = build_encoder("nucleotide_transformer", spec)
        for n in (5, 13, 47, 48, 49, 120):
            seq = "".join(rng.choice(list("ACGTN"), n, p=[0.24, 0.24, 0.24, 0.24, 0.04]))
            spans = token_spans(nt, seq)
            assert len(spans) == len(nt.token_ids(seq)), (truncate, n)
            assert all(0 <= a < b <= n for a, b in spans)
            assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    esm = build_encoder("esm2", {"source": "tiny", "max_len": 6})
    assert token_spans(esm, "MKWLEYSAA") == [(i, i + 1) for i in range(6)]


# ---------------------------------------------------------------- on the tiny bundle


@pytest.mark.slow
def test_ism_equals_brute_force_single_predictions(model):
    """Every substitution of a region spanning UTR/CDS (synonymous, missense, nonsense) and
    the promoter, ISM'd in batches, equals predict() of each mutated input one by one."""
    from isoflow.explain import construct_subject, ism, mutants, region_sites

    c = _construct()
    s = construct_subject(c, window=WINDOW)
    a = c.spans["utr5"][1]
    sites = np.concatenate([region_sites(s, "55-62"), region_sites(s, f"{a - 2}-{a + 8}")])
    effects = ism(model, s, sites, batch_size=5)
    assert len(effects) == 3 * len(sites)
    assert {"dna_only", "rna", "synonymous", "missense", "nonsense"} <= set(effects["consequence"])
    ref = model.predict([s.inputs], batch_size=1)[0]
    brute = np.stack([model.predict([m.inputs], batch_size=1)[0] for m in mutants(s, sites)])
    got = effects[model.tissues].to_numpy()
    np.testing.assert_allclose(got, brute - ref, rtol=0, atol=TOLERANCE)
    assert np.abs(got).max() > 0  # the substitutions move the prediction


@pytest.mark.slow
def test_reencode_changed_only_equals_the_full_path(model):
    from isoflow.explain import construct_subject, ism, region_sites

    s = construct_subject(_construct(), window=WINDOW)
    sites = region_sites(s, None)[::4]
    fast = ism(model, s, sites, batch_size=8)
    full = ism(model, s, sites, batch_size=8, reencode_changed_only=False)
    pd.testing.assert_frame_equal(
        fast.drop(columns=model.tissues), full.drop(columns=model.tissues)
    )
    np.testing.assert_allclose(
        fast[model.tissues].to_numpy(), full[model.tissues].to_numpy(), rtol=0, atol=TOLERANCE
    )


@pytest.mark.slow
def test_summary_score_is_ref_minus_mean_over_four_bases(model):
    from isoflow.explain import construct_subject, ism, region_sites, summarize

    s = construct_subject(_construct(), window=WINDOW)
    effects = ism(model, s, region_sites(s, "utr5"))
    summary = summarize(effects, model.tissues)
    assert set(summary["tissue"]) == {*model.tissues, "mean"}
    assert (summary["n_alts"] == 3).all()
    tissue = model.tissues[0]
    one = effects[effects["position"] == effects["position"].iloc[0]]
    row = summary[(summary["tissue"] == tissue) & (summary["position"] == one["position"].iloc[0])]
    # predictions: ref = 0 (effects are alt - ref); mean over the 4 bases = sum(alts) / 4
    assert row["score"].iloc[0] == pytest.approx(0 - one[tissue].sum() / 4, abs=1e-6)
    assert row["max_abs_effect"].iloc[0] == pytest.approx(one[tissue].abs().max(), abs=1e-6)


@pytest.mark.slow
def test_attention_region_shares_sum_to_one(model):
    from isoflow.explain import attention_by_region, construct_subject

    subjects = [construct_subject(_construct(seed), window=WINDOW) for seed in range(3)]
    shares = attention_by_region(model, subjects, batch_size=2)
    assert set(shares["key"]) == {"rna", "protein"}
    assert set(shares[shares["key"] == "rna"]["region"]) == {"utr5", "cds", "utr3"}
    assert set(shares[shares["key"] == "protein"]["region"]) == {"cds"}
    totals = shares.groupby(["layer", "key", "head"])["share"].sum()
    np.testing.assert_allclose(totals.to_numpy(), 1.0, atol=1e-5)
    assert (shares["n"] == 3).all()
    assert len(set(shares["head"])) == model.card["model"]["heads"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "card, said",
    [
        ({"aggregator": "concat"}, "aggregator: is concat: attention by region needs"),
        ({"modalities": ["dna"]}, "modalities: reads dna only: attention by region maps"),
    ],
)
def test_attention_a_bundle_cannot_give_is_refused_before_the_ism(
    bundle, model, tmp_path, monkeypatch, card, said
):
    """--attention on a concat or DNA-only bundle was refused only after the whole ISM ran
    (87 s on a demo bundle), and nothing was written."""
    import json

    from isoflow import explain as explain_module
    from isoflow.constructs import write_constructs_tsv
    from isoflow.errors import InputError

    def no_ism(*args, **kwargs):
        raise AssertionError("the ISM ran before the bundle was checked for attention")

    monkeypatch.setattr(explain_module, "ism", no_ism)
    monkeypatch.setattr(model, "card", {**model.card, **card})
    subject = explain_module.construct_subject(_construct(), window=WINDOW)
    with pytest.raises(InputError) as err:
        explain_module.explain(
            model, subject=subject, region="utr5", attention_subjects=[subject], out=tmp_path / "o"
        )
    assert str(err.value).startswith(f"{model.path}:{said}")
    # the command: from the manifest, before the model loads (no model.pt here)
    manifest_only = tmp_path / "bundle"
    manifest_only.mkdir()
    manifest = json.loads((bundle["path"] / "manifest.json").read_text())
    (manifest_only / "manifest.json").write_text(json.dumps({**manifest, **card}))
    constructs = tmp_path / "c.tsv"
    write_constructs_tsv([_construct()], constructs)
    with pytest.raises(InputError) as err:
        explain_module.explain_job(
            manifest_only,
            tmp_path / "o",
            construct=constructs,
            construct_id="c1",
            region="utr5",
            attention=True,
        )
    assert str(err.value).startswith(f"{manifest_only}:{said}")
    assert not list(tmp_path.glob("o*"))


@pytest.mark.parametrize("modalities", [["dna", "protein"], ["dna", "rna"], ["protein"]])
def test_attention_is_mapped_for_a_bundle_with_an_rna_or_protein_key(modalities):
    """A cross-attention bundle reading RNA or protein (a DNA+protein one too: its keys are
    the protein's) is accepted for --attention, from its manifest alone."""
    from isoflow.explain import check_attention_bundle

    check_attention_bundle("b", {"aggregator": "cross_attention", "modalities": modalities})


def _transcript_fixture(bundle, tmp_path):
    """Two dataset transcripts (one per strand, multi-exon, coding) whose RNA and protein
    are the genome's: a dataset and annotation in the DESIGN.md formats."""
    from isoflow.dataset import read_dataset, write_dataset
    from isoflow.genome import GenomeWindows
    from isoflow.sequences import _records_one_by_one, window_bounds

    frame, tissues = read_dataset(bundle["dataset"])
    rows, annotation = [], []
    specs = [
        ("ENSTP.1", "+", [(10_000, 10_060), (10_100, 10_160), (10_200, 10_240)], 10_020, 10_220),
        ("ENSTM.1", "-", [(20_000, 20_050), (20_100, 20_150), (20_180, 20_230)], 20_030, 20_200),
    ]
    for tid, strand, exons, cds_start, cds_end in specs:
        tss = exons[0][0] if strand == "+" else exons[-1][1] - 1
        annotation.append(
            {
                "transcript_id": tid,
                "gene_id": "ENSGX.1",
                "gene_name": "X",
                "transcript_type": "protein_coding",
                "chrom": "chr1",
                "strand": strand,
                "tx_start": exons[0][0],
                "tx_end": exons[-1][1],
                "tss": tss,
                "exon_starts": [e[0] for e in exons],
                "exon_ends": [e[1] for e in exons],
                "cds_start": cds_start,
                "cds_end": cds_end,
                "cds_phase": 0,
                "utr5_len": 0,
                "cds_len": 0,
                "utr3_len": 0,
                "selenocysteines": [],
                "tags": [],
            }
        )
    table = pd.DataFrame(annotation)
    with GenomeWindows(bundle["fasta"]) as genome:
        records = {r.transcript_id: r for r in _records_one_by_one(table, genome)}
    for ann in annotation:
        start, end = window_bounds(ann["tss"], ann["strand"], WINDOW)
        record = records[ann["transcript_id"]]
        row = frame.iloc[0].to_dict() | {
            "transcript_id": ann["transcript_id"],
            "strand": ann["strand"],
            "tss": ann["tss"],
            "window_start": start,
            "window_end": end,
            "rna_seq": record.rna,
            "protein_seq": record.protein,
            "split": "test",
        }
        rows.append(row)
    dataset = tmp_path / "tx.parquet"
    write_dataset(pd.DataFrame(rows), tissues, bundle["fasta"], dataset)
    annotation_path = tmp_path / "transcripts.parquet"
    table.to_parquet(annotation_path)
    return dataset, annotation_path


@pytest.mark.slow
def test_transcript_subjects_follow_exons_on_both_strands(bundle, model, tmp_path):
    from isoflow.explain import ism, mutate, read_transcripts, region_sites

    dataset, annotation = _transcript_fixture(bundle, tmp_path)
    subjects = read_transcripts(dataset, annotation, ["ENSTP.1", "ENSTM.1"])
    for s in subjects:
        exonic = np.flatnonzero(s.rna_pos >= 0)
        assert len(exonic) == len(s.rna)  # the whole RNA lies in the 512-bp window
        assert "".join(s.dna[i] for i in exonic[np.argsort(s.rna_pos[exonic])]) == s.rna
        assert s.part[WINDOW // 2] == "utr5" and s.part[WINDOW // 2 - 1] == "upstream"
        assert {"intron", "cds", "utr3"} <= set(s.part)
        cds = region_sites(s, "cds")
        m = mutate(s, int(cds[4]), "A" if s.ref[cds[4]] != "A" else "C")
        assert m.inputs.rna[s.rna_pos[cds[4]]] == m.alt
        intron = region_sites(s, "intron")[0]
        assert mutate(s, int(intron), "A" if s.ref[intron] != "A" else "C").changed == ("dna",)
    effects = ism(model, subjects[1], region_sites(subjects[1], "250-262"))
    assert len(effects) == 36


@pytest.mark.slow
def test_a_missing_dataset_or_annotation_is_one_line(bundle, tmp_path, capsys):
    """`--dataset nope.parquet` was a 20-line traceback (pyarrow's FileNotFoundError names no
    filename); it is one line naming the option and the file, exit 1, nothing written."""
    from isoflow.commands import main

    dataset, annotation = _transcript_fixture(bundle, tmp_path)
    missing = tmp_path / "nope.parquet"
    out = tmp_path / "out" / "tx"
    for option, given in (("--dataset", missing), ("--annotation", missing)):
        paths = {"--dataset": dataset, "--annotation": annotation, option: given}
        argv = ["explain", "--model", str(bundle["path"]), "--transcript", "ENSTM.1"]
        argv += [f"{key}={path}" for key, path in paths.items()]
        argv += ["--out", str(out), "--device", "cpu"]
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"isoflow explain: error: {option} {missing}: No such file or directory"
        assert not out.parent.exists()


@pytest.mark.slow
def test_a_recorded_genome_not_found_from_here_says_what_it_is_and_the_fix(
    bundle, tmp_path, monkeypatch
):
    """`explain --transcript` run outside the folder the dataset was built in: the dataset's
    recorded genome path (relative) was 'genome FASTA does not exist' with no hint."""
    from isoflow.dataset import read_dataset, write_dataset
    from isoflow.errors import InputError
    from isoflow.explain import read_transcripts

    dataset, annotation = _transcript_fixture(bundle, tmp_path)
    frame, tissues = read_dataset(dataset)
    moved = tmp_path / "moved.parquet"
    write_dataset(frame, tissues, "resources/demo/genome.fa", moved)
    monkeypatch.chdir(tmp_path)  # no resources/ here
    with pytest.raises(InputError) as err:
        read_transcripts(moved, annotation, ["ENSTP.1"])
    assert str(err.value) == (
        f"resources/demo/genome.fa: genome FASTA does not exist (the dataset {moved}'s "
        "recorded genome path, relative to where it was built; give --genome)"
    )
    gone = tmp_path / "gone" / "genome.fa"  # an absolute recorded path is no relative one
    write_dataset(frame, tissues, gone, moved)
    with pytest.raises(InputError) as err:
        read_transcripts(moved, annotation, ["ENSTP.1"])
    assert str(err.value) == (
        f"{gone}: genome FASTA does not exist (the dataset {moved}'s recorded genome path; "
        "give --genome)"
    )
    (subject,) = read_transcripts(moved, annotation, ["ENSTP.1"], genome_fasta=bundle["fasta"])
    assert subject.id == "ENSTP.1"


@pytest.mark.slow
def test_an_unknown_construct_id_is_one_line_before_the_model_loads(
    bundle, tmp_path, capsys, monkeypatch
):
    """`explain --construct FILE --id c9` with no c9 in FILE was reported only after the
    model had loaded."""
    import isoflow.bundle
    from isoflow.commands import main
    from isoflow.constructs import write_constructs_tsv

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the id was checked")

    monkeypatch.setattr(isoflow.bundle, "load_model", no_model)
    constructs = tmp_path / "c.tsv"
    write_constructs_tsv([_construct(1), Construct("c2", _construct(2).parts)], constructs)
    out = tmp_path / "out" / "c9"
    argv = ["explain", "--model", str(bundle["path"]), "--construct", str(constructs)]
    argv += ["--id", "c9", "--region", "utr5", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"isoflow explain: error: {constructs}:c9: no such construct (c1, c2)"
    assert not out.parent.exists()


@pytest.mark.slow
def test_cli_end_to_end(bundle, tmp_path, capsys):
    from isoflow.commands import main
    from isoflow.constructs import write_constructs_tsv

    constructs = tmp_path / "c.tsv"
    write_constructs_tsv([_construct(1), Construct("c2", _construct(2).parts)], constructs)
    out = tmp_path / "out" / "c1"
    argv = ["explain", "--model", str(bundle["path"]), "--construct", str(constructs)]
    argv += ["--id", "c1", "--region", "utr5", "--attention", "--out", str(out)]
    argv += ["--device", "cpu", "--tissue", "mean", "--tissue", "Liver"]
    assert main(argv) == 0
    for name in ("ism.tsv", "ism.parquet", "ism_summary.tsv", "ism.png", "attention.tsv"):
        assert (tmp_path / "out" / f"c1.{name}").stat().st_size > 0, name
    assert (tmp_path / "out" / "c1.attention.png").stat().st_size > 0
    # what run checked before any work is what it wrote (output_paths, one list)
    from isoflow.explain import output_paths, write_outputs

    assert sorted(output_paths(out)) == sorted((tmp_path / "out").iterdir())
    with pytest.raises(ValueError, match="not in TABLE_SUFFIXES"):
        write_outputs(tmp_path / "x", {"new_table": pd.DataFrame()}, {})
    ism = pd.read_parquet(tmp_path / "out" / "c1.ism.parquet")
    assert len(ism) == 3 * 20 and list(ism.columns[-3:]) == ["Liver", "Brain", "Testis"]
    attention = pd.read_csv(tmp_path / "out" / "c1.attention.tsv", sep="\t")
    assert (attention["n"] == 2).all()
    # a transcript of the dataset, by window offsets
    dataset, annotation = _transcript_fixture(bundle, tmp_path)
    argv = ["explain", "--model", str(bundle["path"]), "--transcript", "ENSTM.1"]
    argv += ["--dataset", str(dataset), "--annotation", str(annotation), "--region", "cds"]
    argv += ["--attention", "--out", str(tmp_path / "tx"), "--device", "cpu"]
    assert main(argv) == 0
    summary = pd.read_csv(tmp_path / "tx.ism_summary.tsv", sep="\t")
    assert set(summary["part"]) == {"cds"}
    # a bad region: one line, exit 1
    argv = ["explain", "--model", str(bundle["path"]), "--construct", str(constructs)]
    argv += ["--id", "c1", "--region", "enhancer", "--out", str(tmp_path / "bad")]
    assert main(argv) == 1
    assert "neither START-END nor a part" in capsys.readouterr().err


def _read_bedgraph(path):
    """A bedGraph as a UCSC custom track reads it: one ``track type=bedGraph`` line, then
    tab-separated ``chrom start end value`` rows."""
    head, *lines = path.read_text().splitlines()
    assert head.startswith('track type=bedGraph name="') and ' description="' in head, head
    assert head.count('"') == 4, head  # two quoted values, nothing unbalanced
    rows = [line.split("\t") for line in lines]
    assert all(len(r) == 4 for r in rows), rows[:3]
    frame = pd.DataFrame(rows, columns=["chrom", "start", "end", "value"])
    return head, frame.astype({"start": "int64", "end": "int64", "value": "float64"})


def test_bedgraph_is_sorted_0_based_and_leaves_out_nan():
    # the rows as a minus-strand transcript's summary lists them: window order, against
    # the genome; one position with no alt seen
    from isoflow.explain import bedgraph

    summary = pd.DataFrame(
        {
            "tissue": ["mean"] * 4 + ["Liver"] * 4,
            "position": [10, 11, 12, 13] * 2,
            "chrom": ["chrX"] * 8,
            "genomic_pos": pd.array([501, 500, 499, 498] * 2, dtype="Int64"),
            "score": [0.5, np.nan, -0.25, 1e-7, 1.0, 2.0, 3.0, 4.0],
        }
    )
    text = bedgraph(summary, 'tx"1', "mean")
    head, *rows = text.splitlines()
    assert head == (
        'track type=bedGraph name="tx\'1 ISM mean" description="isoflow explain ISM of '
        "tx'1, mean: ref - mean prediction over the bases, log(1 + TPM); positions with no "
        'alt seen left out"'
    )
    assert rows == ["chrX\t497\t498\t1e-07", "chrX\t498\t499\t-0.25", "chrX\t500\t501\t0.5"]
    construct = summary.assign(genomic_pos=pd.array([pd.NA] * 8, dtype="Int64"))
    with pytest.raises(ValueError, match="needs genome positions"):
        bedgraph(construct, "c1", "mean")
    # two tracks of one file name would overwrite each other: refused before any work
    from types import SimpleNamespace

    from isoflow.errors import InputError
    from isoflow.explain import explain

    model = SimpleNamespace(tissues=["Adipose Tissue", "Adipose_Tissue"])
    with pytest.raises(InputError, match="would share a bedGraph file name"):
        explain(model, subject=SimpleNamespace(kind="transcript"), out="x", tissues=model.tissues)


def test_an_unknown_tissue_track_names_the_setting_not_a_record():
    """``isoflow explain --tissue Liver`` said ``<input>:Liver: not a tissue ...``: the error
    names --tissue (rule explain: the config key explain.tissues) and the closest track."""
    from types import SimpleNamespace

    from isoflow import commands
    from isoflow import explain as explain_module
    from isoflow.errors import InputError

    model = SimpleNamespace(tissues=["liver", "Lung"])
    with pytest.raises(InputError) as caught:
        explain_module.explain(model, out="x", tissues=["mean", "Liver"])
    err = caught.value
    message = (
        "'Liver' is not a tissue of this model (did you mean 'liver'?); tracks: mean, liver, Lung"
    )
    assert str(err) == f"<input>:explain.tissues: {message}"  # the rule's config key
    commands._as_flags(err, explain_module.FLAGS)
    assert str(err) == f"--tissue: {message}"


@pytest.mark.slow
def test_a_transcripts_ism_tracks_are_bedgraphs_of_its_summary(bundle, tmp_path):
    """A transcript's logo tracks as bedGraphs beside ism_summary.tsv, one per track (IGV
    reads one track line per file): 0-based start = genomic_pos - 1, sorted by genome
    position on both strands, the FASTA's contig name; a construct's rerun removes them."""
    from isoflow.commands import main
    from isoflow.constructs import write_constructs_tsv

    dataset, annotation = _transcript_fixture(bundle, tmp_path)
    out = tmp_path / "out" / "x"
    for tid in ("ENSTM.1", "ENSTP.1"):
        argv = ["explain", "--model", str(bundle["path"]), "--transcript", tid]
        argv += ["--dataset", str(dataset), "--annotation", str(annotation)]
        argv += ["--region", "250-262", "--out", str(out), "--device", "cpu"]
        assert main([*argv, "--tissue", "mean", "--tissue", "Liver"]) == 0
        summary = pd.read_csv(tmp_path / "out" / "x.ism_summary.tsv", sep="\t")
        window_order = summary[summary["tissue"] == "mean"]["genomic_pos"].diff().dropna()
        assert (window_order == (-1 if tid == "ENSTM.1" else 1)).all()
        for track in ("mean", "Liver"):
            head, graph = _read_bedgraph(tmp_path / "out" / f"x.ism.{track}.bedGraph")
            assert f'name="{tid} ISM {track}"' in head
            want = summary[(summary["tissue"] == track) & summary["score"].notna()]
            want = want.sort_values("genomic_pos")
            assert len(graph) == len(want) > 0
            assert (graph["chrom"] == "chr1").all()  # the FASTA's name (fixture)
            assert list(graph["start"] + 1) == list(want["genomic_pos"])
            assert (graph["end"] == graph["start"] + 1).all()
            assert graph["start"].is_monotonic_increasing
            np.testing.assert_array_equal(graph["value"], want["score"])
    # a rerun with another track set removes the earlier one's other tracks
    assert main([*argv, "--tissue", "Brain"]) == 0
    graphs = sorted(p.name for p in out.parent.glob("*.bedGraph"))
    assert graphs == ["x.ism.Brain.bedGraph"]
    # a construct has no genome: no bedGraph, and its rerun over the prefix removes them
    constructs = tmp_path / "c.tsv"
    write_constructs_tsv([_construct(1)], constructs)
    argv = ["explain", "--model", str(bundle["path"]), "--construct", str(constructs)]
    argv += ["--id", "c1", "--region", "0-4", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert not list(out.parent.glob("*.bedGraph"))


def test_a_region_reaching_past_the_cassette_is_refused():
    # `--region 2300-9999` on a 2,323-nt cassette was silently clipped to 2300-2323
    from isoflow.errors import InputError
    from isoflow.explain import construct_subject, region_sites

    c = _construct()
    s = construct_subject(c, window=WINDOW)
    n = len(c.cassette)
    with pytest.raises(InputError, match=f"reaches past the construct's coordinates 0-{n}"):
        region_sites(s, f"{n - 5}-{n + 100}")
    assert len(region_sites(s, f"{n - 5}-{n}")) == 5


@pytest.mark.slow
def test_placement_errors_are_one_line_before_the_model_loads(bundle, tmp_path, capsys):
    # --fill Z and a short --background were ValueError tracebacks (score gave one line)
    from isoflow.commands import main
    from isoflow.constructs import write_constructs_tsv

    constructs = tmp_path / "c.tsv"
    write_constructs_tsv([_construct(1)], constructs)
    argv = ["explain", "--model", str(bundle["path"]), "--construct", str(constructs)]
    argv += ["--id", "c1", "--region", "utr5", "--out", str(tmp_path / "o" / "c1")]
    assert main([*argv, "--fill", "Z"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "isoflow explain: error: --fill: one letter of A, C, G, T, N, not 'Z'"
    short = tmp_path / "bg.fa"
    short.write_text(">bg\n" + "ACGT" * 10 + "\n")
    assert main([*argv, "--background", str(short)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow explain: error: {short}: the background is 40 nt, shorter")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- a rerun interrupted


def _explain_argv(tmp_path, model, *extra):
    return [
        "explain",
        "--model",
        str(tmp_path / model),
        "--out",
        str(tmp_path / "out" / "c1"),
        *extra,
    ]


def test_an_error_while_writing_leaves_the_earlier_outputs_whole(tmp_path, monkeypatch):
    """A figure failing on a rerun left the new tables beside the earlier run's figures."""
    from helpers.interrupted import install, snapshot
    from isoflow import commands

    install("explain", monkeypatch.setattr)
    assert commands.main(_explain_argv(tmp_path, "m1", "--attention")) == 0
    earlier = snapshot(tmp_path / "out")
    assert len(earlier) == 6  # every output, attention's included

    def broken(*args, **kwargs):
        raise RuntimeError("no figure")

    with monkeypatch.context() as m:
        m.setattr("isoflow.report.figures.save_figure", broken)
        with pytest.raises(RuntimeError, match="no figure"):
            commands.main(_explain_argv(tmp_path, "m2"))
    assert snapshot(tmp_path / "out") == earlier
    # undisturbed, the rerun's set replaces the earlier one, attention's files gone
    assert commands.main(_explain_argv(tmp_path, "m2")) == 0
    now = snapshot(tmp_path / "out")
    assert sorted(now) == ["c1.ism.parquet", "c1.ism.png", "c1.ism.tsv", "c1.ism_summary.tsv"]
    assert all(now[name] != earlier[name] for name in now)


def test_a_rerun_killed_while_writing_leaves_the_earlier_outputs_whole(tmp_path, monkeypatch):
    from helpers.interrupted import install, run_killed, snapshot
    from isoflow import commands

    install("explain", monkeypatch.setattr)
    assert commands.main(_explain_argv(tmp_path, "m1", "--attention")) == 0
    earlier = snapshot(tmp_path / "out")
    run_killed(
        "explain",
        _explain_argv(tmp_path, "m2", "--attention")[1:],
        kill="isoflow.report.figures:save_figure",
    )
    left = snapshot(tmp_path / "out")
    assert {k: v for k, v in left.items() if not k.startswith(".")} == earlier
    assert ".c1.explain.partial/" in left  # what the kill left: the next run clears it
    assert commands.main(_explain_argv(tmp_path, "m2", "--attention")) == 0
    now = snapshot(tmp_path / "out")
    assert sorted(now) == sorted(earlier) and all(now[n] != earlier[n] for n in now)


# ---------------------------------------------------------------- what the model cannot see


def test_summary_leaves_out_the_alts_without_an_effect():
    # an alt the model cannot see has a NaN effect: the position's summary is over the others,
    # and NaN (not 0, "neutral") where no alt has an effect
    from isoflow.explain import summarize

    rows = []
    for position, effects in ((0, [0.3, -0.1, 0.4]), (1, [0.2, np.nan, 0.4]), (2, [np.nan] * 3)):
        for alt, e in zip("CGT", effects, strict=True):
            rows.append(
                {"id": "c", "position": position, "window_pos": position, "rna_pos": -1}
                | {"part": "promoter", "ref": "A", "alt": alt, "chrom": None}
                | {"genomic_pos": pd.NA, "genomic_ref": None, "T1": e}
            )
    effects = pd.DataFrame(rows).astype({"genomic_pos": "Int64"})
    summary = summarize(effects, ["T1"]).set_index(["tissue", "position"])
    t1 = summary.loc["T1"]
    assert t1.loc[0, "score"] == pytest.approx(-0.6 / 4)  # ref - mean over the 4 bases
    assert t1.loc[1, "score"] == pytest.approx(-0.6 / 3)  # ref - mean over ref and 2 alts
    assert t1.loc[1, "mean_effect"] == pytest.approx(0.3) and t1.loc[1, "n_seen"] == 2
    assert t1.loc[2, ["score", "mean_effect", "max_abs_effect"]].isna().all()
    assert (t1["n_alts"] == 3).all() and t1.loc[2, "n_seen"] == 0
    assert summary.loc["mean"].loc[2, ["score"]].isna().all()
    assert len(summary) == 6  # the NA genomic columns of a construct keep every row


@pytest.mark.slow
def test_a_substitution_the_model_cannot_see_has_no_effect_not_zero(model):
    # ISM of RNA bases the encoder does not read (past its tokens) and outside the DNA window
    # gave effect 0 exactly: read as "neutral". Now NaN, `seen` empty, and the logo draws
    # nothing there.
    from matplotlib.patches import PathPatch

    from isoflow.explain import (
        NOT_READ_NOTE,
        construct_subject,
        ism,
        plot_ism,
        region_sites,
        summarize,
    )

    rng = np.random.default_rng(5)
    parts = _construct().parts | {"utr3": "".join(rng.choice(list("ACGT"), 300))}
    s = construct_subject(Construct("long", parts), window=WINDOW)
    tss = s.coord[s.rna_pos == 0][0]
    beyond = region_sites(s, f"{tss + WINDOW // 2 + 10}-{tss + WINDOW // 2 + 14}")
    assert (s.window_pos[beyond] == -1).all() and (s.rna_pos[beyond] >= 0).all()
    inside = region_sites(s, f"{tss + 2}-{tss + 4}")
    sites = np.concatenate([inside, beyond])
    # the tiny config's rna.max_nt (120) and NT's tokens read the RNA's first 120 nt only
    effects = ism(model, s, sites, batch_size=4)
    blind = effects["position"].isin(s.coord[beyond])
    assert (effects.loc[blind, "changed"] == "rna").all()
    assert (effects.loc[blind, "seen"] == "").all()
    assert effects.loc[blind, model.tissues].isna().all().all()
    assert effects.loc[~blind, model.tissues].notna().all().all()
    assert effects.loc[~blind, "seen"].str.contains("dna").all()
    full = ism(model, s, sites, batch_size=4, reencode_changed_only=False)
    np.testing.assert_allclose(
        effects[model.tissues].to_numpy(), full[model.tissues].to_numpy(), atol=TOLERANCE
    )
    summary = summarize(effects, model.tissues)
    hidden = summary["position"].isin(s.coord[beyond])
    assert summary.loc[hidden, "score"].isna().all() and (summary.loc[hidden, "n_seen"] == 0).all()
    assert summary.loc[~hidden, "score"].notna().all()
    fig = plot_ism(summary, s)
    drawn = [p for p in fig.axes[0].patches if isinstance(p, PathPatch)]
    visible = summary[(summary["tissue"] == "mean") & ~hidden]
    assert len(drawn) == int((visible["score"] != 0).sum())
    assert not any(t.get_text() == NOT_READ_NOTE for t in fig.axes[0].texts)
    only_hidden = summary[hidden]
    empty = plot_ism(only_hidden, s)  # nothing to draw: no error, and the track says why
    assert any(t.get_text() == NOT_READ_NOTE for t in empty.axes[0].texts)


# ---------------------------------------------------------------- on the genome


def _real_transcripts(shared_real, ids):
    """Dataset-style rows of real chr9 transcripts (their windows, RNA and protein read
    from the genome as rule sequences reads them) and their annotation."""
    from isoflow.annotation import read_annotation
    from isoflow.genome import GenomeWindows
    from isoflow.sequences import window_bounds
    from isoflow.variants import transcript_inputs

    folder = shared_real / "bambu_chr9"
    fasta = folder / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa"
    annotation = read_annotation(folder / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf")
    annotation = annotation[annotation["transcript_id"].isin(ids)].reset_index(drop=True)
    rows = []
    with GenomeWindows(fasta) as genome:
        for row in annotation.itertuples(index=False):
            inputs = transcript_inputs(row, genome, WINDOW)
            start, end = window_bounds(int(row.tss), row.strand, WINDOW)
            rows.append(
                {"transcript_id": row.transcript_id, "chrom": row.chrom, "strand": row.strand}
                | {"tss": row.tss, "window_start": start, "window_end": end}
                | {"rna_seq": inputs.rna, "protein_seq": inputs.protein}
            )
    return pd.DataFrame(rows), annotation, fasta


@pytest.mark.slow
@pytest.mark.needs("shared")
def test_transcript_ism_rows_are_placed_on_the_genome_on_both_strands(shared_real, model):
    # PREFIX.ism.tsv gave a window index and letters along the transcript only: on the minus
    # strand the index runs against the genome and the letters are its complements
    import pysam

    from isoflow.explain import ism, summarize, transcript_subjects

    ids = ["ENST00000356521.8", "ENST00000469197.5"]  # CBWD1 (-), DOCK8 (+)
    frame, annotation, fasta = _real_transcripts(shared_real, ids)
    subjects = {s.id: s for s in transcript_subjects(frame, annotation, str(fasta))}
    assert {subjects[i].strand for i in ids} == {"-", "+"}
    contig = pysam.FastaFile(str(fasta)).fetch("9").upper()
    complement = {"A": "T", "C": "G", "G": "C", "T": "A"}
    for tid in ids:
        s = subjects[tid]
        centre = WINDOW // 2
        sites = np.array([centre - 3, centre, centre + 60])  # upstream, the TSS, the 5'UTR/CDS
        effects = ism(model, s, sites)
        assert (effects["chrom"] == "9").all()
        for r in effects.itertuples(index=False):
            genome_base = contig[r.genomic_pos - 1]  # 1-based
            assert r.genomic_ref == genome_base, (tid, r.position)
            if s.strand == "+":
                assert (r.genomic_ref, r.genomic_alt) == (r.ref, r.alt)
            else:
                assert (r.genomic_ref, r.genomic_alt) == (complement[r.ref], complement[r.alt])
        # the TSS is the annotation's (0-based) TSS, one base further along the genome
        row = annotation.set_index("transcript_id").loc[tid]
        at_tss = effects[effects["position"] == centre]["genomic_pos"]
        assert (at_tss == int(row["tss"]) + 1).all()
        step = 1 if s.strand == "+" else -1
        upstream = effects[effects["position"] == centre - 3]["genomic_pos"]
        assert (upstream == int(row["tss"]) + 1 - 3 * step).all()
        summary = summarize(effects, model.tissues)
        assert summary["genomic_pos"].notna().all() and (summary["chrom"] == "9").all()


def test_slot_regions_of_a_raw_rna_cut_at_its_5_end_lie_in_its_3_part():
    """A raw RNA the model cuts under keep_3prime (``Model.raw_cuts``) is read from inside
    the sequence: its key slots map onto the kept 3' letters, not the first ones."""
    from types import SimpleNamespace

    from isoflow.explain import slot_regions
    from isoflow.model.encoders import build_encoder

    nt = build_encoder(
        "nucleotide_transformer", {"source": "tiny", "max_len": 5, "truncate": "keep_3prime"}
    )  # CLS + 4 6-mers: 24 nt
    model = SimpleNamespace(
        frozen={},
        network=SimpleNamespace(encoders={"rna": nt}),
        raw_cuts={"rna": (24, "keep_3prime")},
    )
    seq = "".join(np.random.default_rng(1).choice(list("ACGT"), 60))
    shares = slot_regions(model, "rna", seq, [("head", 0, 36), ("tail", 36, 60)], 4)
    np.testing.assert_allclose(shares, [[0.0, 1.0]] * 4)
    model.raw_cuts["rna"] = (24, "keep_5prime")
    nt.truncate = "keep_5prime"
    shares = slot_regions(model, "rna", seq, [("head", 0, 24), ("tail", 24, 60)], 4)
    np.testing.assert_allclose(shares, [[1.0, 0.0]] * 4)


@pytest.mark.slow
def test_a_finetuned_bundle_on_a_transcript_is_one_warning(bundle, tmp_path, caplog):
    """A fine-tuned bundle learned from constructs placed with N fill; explaining a genomic
    transcript with it was silent. One warning names the bundle, its placement and that
    genomic inputs were never in its fine-tuning; the bedGraph says its table's units."""
    from helpers.bundles import as_finetuned
    from isoflow.commands import main

    tuned = as_finetuned(bundle["path"], tmp_path / "tuned", table="lab.tsv")
    dataset, annotation = _transcript_fixture(bundle, tmp_path)
    for path, warned in ((tuned, 1), (bundle["path"], 0)):
        argv = ["explain", "--model", str(path), "--transcript", "ENSTP.1"]
        argv += ["--dataset", str(dataset), "--annotation", str(annotation), "--region"]
        argv += ["250-252", "--out", str(tmp_path / "o" / path.name), "--device", "cpu"]
        caplog.clear()
        with caplog.at_level("WARNING", logger="isoflow.bundle"):
            assert main(argv) == 0
        lines = [r.getMessage() for r in caplog.records if "fine-tuned bundle" in r.getMessage()]
        assert len(lines) == warned
        if warned:
            assert lines[0].startswith(f"{tuned / 'manifest.json'}: a fine-tuned bundle")
            assert "placed with N fill around the cassette" in lines[0]
            assert "isoflow explain --transcript" in lines[0] and "never saw" in lines[0]
    head, _ = _read_bedgraph(tmp_path / "o" / f"{tuned.name}.ism.mean.bedGraph")
    assert "the table's units (lab.tsv)" in head and "TPM" not in head
