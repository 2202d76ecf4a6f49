"""isoflow.errors: one-line errors, and the one non-UTF-8 message every text reader gives."""

import gzip

import pysam
import pytest

from isoflow.errors import InputError, non_utf8_error


def test_input_error_is_one_line_naming_file_and_record():
    err = InputError("ann.gtf.gz", 1234, "exon of ENST1.1 lies\noutside its transcript")
    assert str(err) == "ann.gtf.gz:1234: exon of ENST1.1 lies outside its transcript"
    assert str(InputError("x.tsv", None, "empty")) == "x.tsv: empty"


@pytest.mark.parametrize("compression", ["plain", "gzip", "bgzip"])
def test_non_utf8_error_names_line_byte_and_column(tmp_path, compression):
    text = "ok line\nsecond \u00e9 fine\nthird".encode() + b" bad\xff here\nlast\n"
    path = tmp_path / "t.txt"
    path.write_bytes(text)
    if compression != "plain":
        packed = tmp_path / "t.txt.gz"
        if compression == "gzip":
            packed.write_bytes(gzip.compress(text))
        else:
            pysam.tabix_compress(str(path), str(packed))
        path = packed
    expected = (
        f"{path}:3: byte 0xff at column 10 is not UTF-8; "
        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )
    assert str(non_utf8_error(path)) == expected
    assert str(non_utf8_error(path, text)) == expected  # the bytes in hand: same answer
    ok = tmp_path / "ok.txt"
    ok.write_text("all fine\n")
    assert str(non_utf8_error(ok)) == f"{ok}: not UTF-8 text"
