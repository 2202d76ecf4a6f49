"""isoflow.errors: one-line errors, and the one non-UTF-8 message every text reader gives."""

import gzip

import pysam
import pytest

from isoflow.errors import InputError, close_matches, did_you_mean, non_utf8_error


def test_input_error_is_one_line_naming_file_and_record():
    err = InputError("ann.gtf.gz", 1234, "exon of ENST1.1 lies\noutside its transcript")
    assert str(err) == "ann.gtf.gz:1234: exon of ENST1.1 lies outside its transcript"
    assert str(InputError("x.tsv", None, "empty")) == "x.tsv: empty"


def test_a_name_differing_only_in_case_is_suggested_first():
    """``cell_a`` scores as close to ``cell_B`` as to ``cell_A`` by case-sensitive difflib,
    which broke the tie by the larger name: score suggested 'cell_B' (a reviewer's run)."""
    names = ["cell_A", "cell_B", "cell_C"]
    assert close_matches("cell_a", names) == ["cell_A"]
    assert did_you_mean("cell_a", names) == " (did you mean 'cell_A'?)"
    assert close_matches("CELL_B", names, n=3) == ["cell_B"]
    # no case-insensitive twin: difflib's closest, case ignored, named as spelled
    assert close_matches("livr", ["Liver", "Lung"]) == ["Liver"]
    assert close_matches("max_epoch", ["max_epochs", "lr"]) == ["max_epochs"]
    assert did_you_mean("zzz", ["Liver", "Lung"]) == ""


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


def _workbook() -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as book:
        book.writestr("[Content_Types].xml", "<x/>")
        book.writestr("xl/workbook.xml", "<w/>")
    return out.getvalue()


UTF16_LINE = "UTF-16 text, not UTF-8: save as UTF-8 (iconv -f utf-16 -t utf-8)"
EXCEL_LINE = "an Excel workbook, not text: export it as tab-separated text"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("id\tgroup\n".encode("utf-16"), UTF16_LINE),  # BOM FF FE
        (b"\xfe\xff" + "id\tgroup\n".encode("utf-16-be"), UTF16_LINE),
        (_workbook(), EXCEL_LINE),  # .xlsx saved as .csv: a zip
        (bytes.fromhex("d0cf11e0a1b11ae1") + b"\xff" * 8, EXCEL_LINE),  # .xls
    ],
)
@pytest.mark.parametrize("compression", ["plain", "gzip"])
def test_a_utf16_file_or_a_workbook_is_named_not_given_latin1_advice(
    tmp_path, data, expected, compression
):
    # each was told "byte 0xff ... re-encode (iconv -f latin1 -t utf-8)", whose output
    # then failed on a NUL character
    path = tmp_path / "t.csv"
    path.write_bytes(data if compression == "plain" else gzip.compress(data))
    assert str(non_utf8_error(path)) == f"{path}: {expected}"
    assert str(non_utf8_error(path, data)) == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id\tgroup\n".encode("utf-16").decode("latin1"), UTF16_LINE + ", from the original"),
        ("id\tgroup\n".encode("utf-16-le").decode(), UTF16_LINE),  # no byte-order mark
        ("id\tgroup\n".encode("utf-16-be").decode(), UTF16_LINE),
        (_workbook().decode("latin1"), EXCEL_LINE),  # after iconv -f latin1
        ("id\tgroup\nc1\tg\0\n", None),
        ("", None),
    ],
)
def test_not_text_reads_the_signatures_in_decoded_text(text, expected):
    from isoflow.errors import not_text

    found = not_text(text)
    assert found == expected if expected is None else found.startswith(expected)


def _isoflow_exception_classes() -> list[type]:
    """Every exception class defined in isoflow, found by importing each module and walking
    BaseException's subclasses, so a class added later is covered without editing this."""
    import importlib
    import pkgutil

    import isoflow

    for module in pkgutil.walk_packages(isoflow.__path__, "isoflow."):
        if module.name != "isoflow.__main__":
            importlib.import_module(module.name)
    found, todo = [], [BaseException]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] == "isoflow":
            found.append(cls)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_isoflow_exception_survives_pickling():
    # A worker process's error reaches its parent pickled; an InputError (whose args hold
    # only the rendered line) failed to unpickle there, and the training job's parent then
    # waited forever (isoflow.train_workers).
    import inspect
    import pickle

    classes = _isoflow_exception_classes()
    assert InputError in classes and len(classes) > 1
    for cls in classes:
        params = [
            p
            for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        err = cls(*(f"{p.name}-{i}" for i, p in enumerate(params)))
        back = pickle.loads(pickle.dumps(err))
        where = f"{cls.__module__}.{cls.__qualname__}"
        assert type(back) is cls, where
        assert str(back) == str(err), where
        assert back.args == err.args, where
        assert vars(back) == vars(err), where
