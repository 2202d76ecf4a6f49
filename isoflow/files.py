"""Atomic writes, so no rule leaves half an output: every output is written through
:func:`atomic_path`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


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


# A command's outputs are written through atomic_path, which replaces whatever stands at the
# path, a folder with everything under it: a user-given path is checked before any work.


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_files(
    paths: Iterable[str | os.PathLike],
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    option: str = "--out",
) -> None:
    """Refuse a command's output file that is an existing folder (``atomic_path`` would
    replace the folder with all it holds) or one of its ``inputs``, that lies inside an
    input folder the output would change (a model bundle, or a folder of GenBank files when
    the output is one: the next run would read it as an input), or whose folder cannot be
    written (its nearest existing ancestor a file or not writable); an
    :class:`isoflow.errors.InputError` naming the path and ``option``. Other files beside
    an input folder's (scores written next to the maps they score) are fine. Nothing is
    created: ``atomic_path`` makes missing folders when it writes."""
    from isoflow.constructs import GENBANK_SUFFIXES  # what a command reads from a folder
    from isoflow.errors import InputError

    given = [Path(p).resolve() for p in inputs if p is not None and str(p) != ""]
    folders = [p for p in given if p.is_dir()]
    for path in paths:
        path = Path(path)
        inside = [
            f
            for f in folders
            if f in path.resolve().parents
            and ((f / "manifest.json").is_file() or path.suffix.lower() in GENBANK_SUFFIXES)
        ]
        if inside:
            raise InputError(
                path,
                None,
                f"{option}: lies inside the input folder {inside[0]}; choose an output path "
                "outside the inputs",
            )
        if path.is_dir():
            raise InputError(
                path,
                None,
                f"{option}: an output file here would replace this existing folder and "
                "everything in it; choose another output path",
            )
        if path.resolve() in given:
            raise InputError(path, None, f"{option}: is an input; choose another output path")
        _check_writable_parent(path, option)


def check_prefix(prefix: str, option: str = "--out") -> None:
    """Refuse an output prefix without a file-name part (``""``, ``d2/``, ``.``), which
    wrote hidden files such as ``d2/.scores.tsv``."""
    from isoflow.errors import InputError

    text = str(prefix)
    if not text.strip() or text.endswith(("/", os.sep)) or Path(text).name in ("", ".", ".."):
        raise InputError(
            text or "''",
            None,
            f"{option}: needs a file name after the folder (e.g. results/mine/run1), not a "
            "folder or an empty name",
        )


def _check_writable_parent(path: Path, option: str) -> None:
    """The folder ``path`` will be written in: its nearest existing ancestor must be a
    folder this process may write in (``atomic_path`` creates the rest only on success)."""
    from isoflow.errors import InputError

    if path.name in ("", ".", ".."):
        raise InputError(path, None, f"{option}: names a folder, not an output file")
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():  # a dangling link: nothing can be written through it
            break
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(
            path, None, f"{option}: {folder} is a file, not a folder; choose another output path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            path, None, f"{option}: the folder {folder} is not writable; choose another output path"
        )


def check_output_folder(
    path: str | os.PathLike,
    *,
    names: Iterable[str],
    earlier: Callable[[Path], bool],
    inputs: Iterable[str | os.PathLike | None] = (),
    what: str = "output",
    option: str = "--out",
) -> None:
    """Refuse a command's output folder that ``atomic_path`` would replace unless it is
    absent, empty, or an earlier output of the same command: it holds nothing but ``names``
    and ``earlier(path)`` is true. Also refused: a path that is a file or a symbolic link,
    and a folder that is, holds or lies inside one of ``inputs``. An
    :class:`isoflow.errors.InputError` naming the folder and what to do."""
    from isoflow.errors import InputError

    folder = Path(path)
    resolved = folder.resolve()
    for item in inputs:
        if item is None or str(item) == "":
            continue
        where = Path(item).resolve()
        if _inside(where, resolved) or _inside(resolved, where):
            raise InputError(
                folder,
                None,
                f"{option}: the {what} folder would replace or write into the input {item}; "
                "choose a new folder outside the inputs",
            )
    if folder.is_symlink():
        raise InputError(
            folder, None, f"{option}: a symbolic link; give the {what} folder's real path"
        )
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(
            folder, None, f"{option}: an existing file, not a folder; choose another {what} folder"
        )
    held = sorted(p.name for p in folder.iterdir())
    if not held:
        return
    allowed = set(names)
    strangers = [name for name in held if name not in allowed]
    if strangers or not earlier(folder):
        shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
        why = f"holds {shown}, not" if strangers else "is not"
        raise InputError(
            folder,
            None,
            f"{option}: existing folder {why} an earlier {what}, and writing the {what} "
            "replaces the whole folder; choose a new or empty folder (or remove this one "
            "yourself)",
        )


def remove_stale(
    possible: Iterable[str | os.PathLike], written: Iterable[str | os.PathLike]
) -> list[Path]:
    """After a command wrote ``written`` under an output prefix, remove the files of
    ``possible`` (every file that command may write under it) it did not write this time:
    an earlier run's ``.specificity.tsv`` or ``.svg`` would otherwise sit beside the new
    outputs as if they were one result. Only regular files of the command's own names are
    removed; returns them."""
    keep = {Path(p).absolute() for p in written}
    removed = []
    for path in map(Path, possible):
        if path.absolute() not in keep and path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed
