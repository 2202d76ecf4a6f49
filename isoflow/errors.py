"""One error type for bad input (one line: ``file:record: what is wrong``), the one
non-UTF-8 message every text reader gives (a UTF-16 file or an Excel workbook named as
such: ``not_text``), and the one way a message suggests a name
(``close_matches``, ``did_you_mean``)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input: renders as one line, ``file:record: what is wrong``.

    ``record`` is a line number (int) or a record name (transcript ID, sample ID...).
    """

    def __init__(self, path: str | os.PathLike | None, record: object, message: str):
        self.path = None if path is None else str(path)
        self.record = record
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.path is not None else "<input>"
        if self.record is not None and self.record != "":
            where = f"{where}:{self.record}"
        return f"{where}: {self.message}".replace("\n", " ")

    def __reduce__(self):
        # pickle (a worker process's error sent to its parent) rebuilds an exception as
        # ``cls(*self.args)``, and ``args`` holds only the rendered line: without this the
        # parent's unpickling failed (under multiprocessing.Pool, which the train workers used
        # then, that ended its result thread and left the parent waiting forever; now the job
        # would end on the unpickling TypeError, not the error's line). Rebuilt field by
        # field, whatever a subclass's __init__ takes (DownloadError's (url, message)).
        return (_rebuild, (type(self), self.path, self.record, self.message, self.__dict__))


def close_matches(
    word: str, choices: Iterable[object], *, n: int = 1, cutoff: float = 0.6
) -> list[str]:
    """The names of ``choices`` (as text) that ``word`` may have meant, best first, at most
    ``n``: one that differs only in case (``cell_a`` -> ``cell_A``), else difflib's closest
    with case ignored. Case-sensitive difflib scored ``cell_A`` and ``cell_B`` alike for
    ``cell_a`` and broke the tie by the larger name, suggesting the wrong one."""
    names = list(dict.fromkeys(str(c) for c in choices))
    key = str(word).casefold()
    same = [name for name in names if name.casefold() == key]
    if same:
        return same[:n]
    folded: dict[str, str] = {}
    for name in names:
        folded.setdefault(name.casefold(), name)
    return [folded[m] for m in difflib.get_close_matches(key, list(folded), n=n, cutoff=cutoff)]


def did_you_mean(word: str, choices: Iterable[object], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for :func:`close_matches`' best of ``choices``, or nothing."""
    match = close_matches(word, choices, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _rebuild(cls: type[InputError], path, record, message, state: dict) -> InputError:
    err = cls.__new__(cls)
    InputError.__init__(err, path, record, message)
    err.__dict__.update(state)
    return err


UTF16 = "UTF-16 text, not UTF-8: save as UTF-8 (iconv -f utf-16 -t utf-8)"
EXCEL = "an Excel workbook, not text: export it as tab-separated text"
# how a file begins: a UTF-16 byte-order mark, a zip (.xlsx) or OLE2 (.xls) container
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_WORKBOOKS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def not_text(head: bytes | str) -> str | None:
    """What a file beginning with ``head`` is when it is no UTF-8 text but a UTF-16 text
    or an Excel workbook, in words with the fix (:data:`UTF16`, :data:`EXCEL`), else None.
    ``head``: the first bytes, or the first characters once decoded: then the same
    signatures read as characters (the file already run through ``iconv -f latin1``, the
    advice for a non-UTF-8 byte), and UTF-16 without a byte-order mark (every other
    character NUL). Each such file was told to re-encode from latin1, then of a NUL."""
    if isinstance(head, str):
        if head[:2] in ("\xff\xfe", "\xfe\xff"):
            return UTF16 + ", from the original file (not one converted from latin1)"
        if head.startswith(("PK\x03\x04", "\xd0\xcf\x11\xe0")):
            return EXCEL
        even, odd = head[:64:2], head[1:64:2]
        for text, nul in ((even, odd), (odd, even)):  # UTF-16LE, UTF-16BE of ASCII
            if len(nul) >= 4 and "\0" not in text and nul.count("\0") == len(nul):
                return UTF16
        return None
    if head[:2] in _UTF16_BOMS:
        return UTF16
    if head.startswith(_WORKBOOKS):
        return EXCEL
    return None


def non_utf8_error(path: str | os.PathLike, data: bytes | None = None) -> InputError:
    """The first byte of ``path`` that is not UTF-8, as ``file:line: byte 0x.. at column N``.

    The one locator for every text reader: call it after a decode failed (a UnicodeDecodeError,
    or a library's own "invalid utf-8"). ``data`` is the file's (decompressed) bytes when the
    caller holds them; otherwise the file is re-read line by line (gzip or bgzip decompressed),
    so the cost is paid only on failure. A line ending is ASCII and never inside a character,
    so decoding line by line finds the same byte as decoding the whole file.
    """
    what = not_text(data[:8]) if data is not None else _file_not_text(path)
    if what:
        return InputError(path, None, what)
    if data is not None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            line_start = data.rfind(b"\n", 0, err.start) + 1
            return _non_utf8_at(path, line, data, err.start, line_start)
        return InputError(path, None, "not UTF-8 text")
    from xopen import xopen  # light module, imported where used: errors.py is imported everywhere

    try:
        with xopen(path, "rb", threads=0) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    return _non_utf8_at(path, number, raw, err.start, 0)
    except (OSError, EOFError) as err:
        return InputError(path, None, f"not UTF-8 text, and unreadable: {err}")
    return InputError(path, None, "not UTF-8 text")


def _file_not_text(path: str | os.PathLike) -> str | None:
    """:func:`not_text` of the file's first bytes (gzip or bgzip decompressed); None when
    they cannot be read (the caller's own read names why)."""
    from xopen import xopen

    try:
        with xopen(path, "rb", threads=0) as handle:
            return not_text(handle.read(8))
    except (OSError, EOFError):
        return None


def _non_utf8_at(path, line: int, data: bytes, position: int, line_start: int) -> InputError:
    return InputError(
        path,
        line,
        f"byte 0x{data[position]:02x} at column {position - line_start + 1} is not UTF-8; "
        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
    )
