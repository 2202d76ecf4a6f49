"""config/isoformer.yaml on the demo data: its filters and its split behave as
docs/reproduction.md says (the real excerpts: tests/unit/test_annotation.py)."""

from __future__ import annotations

import gzip
import math
import re

import pytest
import yaml

from helpers.paths import REPO
from isoflow import demo
from isoflow.annotation import read_annotation
from isoflow.splits import gene_key, split_transcripts

PRESET = yaml.safe_load((REPO / "config" / "isoformer.yaml").read_text())


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return demo.make_demo(tmp_path_factory.mktemp("demo"), seed=0)


def test_preset_filters_and_split_on_the_demo(demo_files):
    everything = read_annotation(demo_files["annotation"])
    kept = read_annotation(demo_files["annotation"], **PRESET["annotation"])
    assert set(kept["transcript_type"]) == {"protein_coding"}
    # gene_types: no transcript of a non-coding gene, even one typed protein_coding
    text = gzip.decompress(demo_files["annotation"].read_bytes()).decode()
    gene_types = dict(re.findall(r'gene_id "([^"]+)"; gene_type "([^"]+)"', text))
    assert {gene_types[g] for g in kept["gene_id"]} == {"protein_coding"}
    coding = everything[
        (everything["transcript_type"] == "protein_coding")
        & everything["gene_id"].map(gene_types).eq("protein_coding")
    ]
    assert sorted(kept["transcript_id"]) == sorted(coding["transcript_id"])
    assert len(kept) < len(everything)

    split = PRESET["split"]
    splits = split_transcripts(
        kept, split["scheme"], split["valid_fraction"], split["test_fraction"]
    )
    sides = splits.groupby("gene_id")["split"].nunique()
    assert (sides == 1).all()  # gene-level: all isoforms of a gene on one side
    genes = splits.drop_duplicates("gene_id")
    assert genes["gene_id"].map(gene_key).is_unique
    n = len(genes)
    for name, fraction in (("valid", 0.05), ("test", 0.05), ("train", 0.90)):
        share = (genes["split"] == name).mean()
        # binomial spread of a hash split: within 4 sd of the configured fraction
        assert abs(share - fraction) <= 4 * math.sqrt(fraction * (1 - fraction) / n), (name, share)
