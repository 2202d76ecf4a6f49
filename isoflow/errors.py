"""One error type for bad input, and atomic writes so no rule leaves half an output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    Works for files and directories. On any exception the temporary is removed and
    ``path`` is left untouched (absent if it did not exist).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {final}")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
