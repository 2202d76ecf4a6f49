"""isoflow.alphabet: the sequence primitives every other module reads."""

from __future__ import annotations

import numpy as np
import pytest

from isoflow.alphabet import (
    DNA_LETTER_CODES,
    id_fraction,
    id_unit,
    is_missing,
    reverse_complement,
    standard_code,
    translate_cds,
    truncate,
)


def test_reverse_complement_of_str_and_bytes_agree_and_keep_iupac_and_case():
    assert reverse_complement("ACGTNRYacgt") == "acgtRYNACGT"
    assert reverse_complement(b"ACGTNRYacgt") == b"acgtRYNACGT"
    assert reverse_complement(bytearray(b"AAC")) == b"GTT"


def test_translate_keeps_the_stop_only_when_asked():
    assert translate_cds("ATGAAATAA") == "MK"
    assert translate_cds("ATGAAATAA", keep_stop=True) == "MK*"
    # an incomplete codon after a stop is X either way when kept; dropped with the stop
    assert translate_cds("ATGTAAG", keep_stop=True) == "M*X"
    assert translate_cds("ATGTAAG") == "M"
    assert translate_cds("ATGAAAG") == "MKX"
    assert translate_cds("CATGAAA", phase=1) == "XMK"


def test_standard_code_is_the_ncbi_table_1():
    code = standard_code()
    assert len(code) == 64 and code["ATG"] == "M" and code["TGA"] == "*" and code["TGG"] == "W"
    assert sorted(c for c, aa in code.items() if aa == "*") == ["TAA", "TAG", "TGA"]


def test_truncate_keeps_the_asked_end_and_rejects_an_unknown_mode():
    assert truncate("ACGTACGT", 3) == "ACG"
    assert truncate("ACGTACGT", 3, "keep_3prime") == "CGT"
    assert truncate("ACG", None) == "ACG" and truncate("ACG", 5) == "ACG"
    with pytest.raises(ValueError, match="keep_5prime"):
        truncate("ACGT", 2, "middle")


@pytest.mark.parametrize("value", [None, float("nan"), ""])
def test_missing_sequences(value):
    assert is_missing(value)


def test_present_sequences_are_not_missing():
    assert not is_missing("A") and not is_missing(np.array([0], dtype=np.uint8))


def test_id_fraction_is_stable_and_order_free():
    a = id_fraction(["ENST1.1", "ENST2.1"])
    b = id_fraction(["ENST2.1", "ENST1.1"])
    assert a[0] == b[1] and a[1] == b[0] and ((0 <= a) & (a < 1)).all()


def test_id_unit_is_the_pinned_sha256_number():
    # Pinned values: a change of the hash would move genes across the split (splits.gene_unit
    # hashes "salt<TAB>gene key") and change every training-fraction subset.
    assert id_unit("isoflow\tENSG00000182378") == 0.5284814099692784
    assert id_unit("ENST00000000001.1") == 0.9106160224802592
    assert list(id_fraction(["ENST00000000001.1"])) == [id_unit("ENST00000000001.1")]


def test_dna_letter_codes_match_the_genome_tokens():
    assert DNA_LETTER_CODES.tobytes() == b"ACGTN"
