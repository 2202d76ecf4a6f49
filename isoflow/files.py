"""Atomic writes, so no rule leaves half an output: every output is written through
:func:`atomic_path`."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    Works for files and directories. On any exception the temporary is removed and
    ``path`` is left untouched (absent if it did not exist). An existing ``path`` is
    replaced by :func:`replace_path`: at every instant ``path`` is the old output whole,
    absent, or the new one whole, never half of either.

    ``fsync``: the new file (or every file and folder under the new folder) reaches the
    disk before the rename, and the rename before this returns, so a crash of the machine
    (not only of the process) leaves the old output or the new one, never a renamed file
    whose data was still in the page cache (a zero-length or zero-filled file after a
    reboot). For what a later run resumes from (checkpoints, embedding shards); the cost
    is the time the disk takes to write the bytes (docs/benchmarks.md, "fsync").
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
        replace_path(tmp, final, fsync=fsync)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


OLD_SUFFIX = ".old"  # an output being replaced, renamed aside until the new one is in place


def replace_path(new: str | os.PathLike, final: str | os.PathLike, *, fsync: bool = False) -> None:
    """Put ``new`` (a file or folder beside ``final``, same filesystem) at ``final``.

    A folder at ``final`` is first renamed aside (``.{name}.XXXX.old``), ``new`` renamed
    into place, and only then the old one deleted: a kill while a large folder is deleted
    left half of the earlier output at ``final`` (deleting it first), now it leaves a hidden
    folder beside it, removed by the next replacement of ``final``. ``fsync``: as
    :func:`atomic_path`'s."""
    new, final = Path(new), Path(final)
    name = glob.escape(final.name)
    # an earlier replacement killed while it deleted the folder it replaced (named
    # `.{name}.XXXXXXXX.tmp.old` by the version before this one)
    for pattern in (f".{name}.{'?' * 8}{OLD_SUFFIX}", f".{name}.{'?' * 8}.tmp{OLD_SUFFIX}"):
        for left in final.parent.glob(pattern):
            if left.is_dir():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
    if fsync:
        sync_tree(new)
    aside = None
    if final.is_dir() and not final.is_symlink():
        aside = Path(
            tempfile.mkdtemp(prefix=f".{final.name}.", suffix=OLD_SUFFIX, dir=final.parent)
        )
        os.replace(final, aside)  # over the empty folder mkdtemp made: a unique free name
    os.replace(new, final)
    if fsync:
        sync_tree(final.parent, recursive=False)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def sync_tree(path: str | os.PathLike, *, recursive: bool = True) -> None:
    """``fsync`` a file, or a folder (and, ``recursive``, every file and folder under it)."""
    path = Path(path)
    if path.is_dir() and recursive:
        for sub in sorted(path.rglob("*")):
            if not sub.is_symlink() and (sub.is_file() or sub.is_dir()):
                _fsync(sub)
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred(signals: Iterable[int] = DEFERRED_SIGNALS) -> Iterator[None]:
    """Hold back ``signals`` (SIGINT, SIGTERM) that arrive during the block, then restore
    the handlers that stood before and deliver each one received, once, to them (a
    KeyboardInterrupt, the default SIGTERM's end of the process): for a few fast steps
    that must not stop halfway (:func:`output_set`'s renames). Outside the main thread,
    where Python cannot set a handler, and for a signal whose handler was not set from
    Python, nothing is held back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if signum not in received:
            received.append(signum)

    earlier = {}
    for signum in signals:
        handler = signal.getsignal(signum)
        if handler is None:  # set outside Python: cannot be put back
            continue
        earlier[signum] = handler
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in earlier.items():
            signal.signal(signum, handler)
        _deliver(received)


def _deliver(signums: list[int]) -> None:
    """Raise each of ``signums`` in turn, the later ones also when an earlier one's handler
    raises (a KeyboardInterrupt)."""
    if signums:
        try:
            signal.raise_signal(signums[0])
        finally:
            _deliver(signums[1:])


# A command writes a set of files under one output prefix (`isoflow score`: .scores.tsv,
# .scores.parquet, .heatmap.svg, ...). Each file through atomic_path is whole, but written
# one after another a kill or an error partway through a rerun left some new files beside
# the earlier run's others, as if one result. output_set writes the whole set first.


def set_folder(paths: Iterable[str | os.PathLike], what: str) -> Path:
    """The temporary folder :func:`output_set` writes ``paths`` (one folder's files) in:
    ``.{common}.{what}.partial`` beside them, ``common`` the names' common start (the
    prefix) without its trailing dot. The same set always gets the same folder, so the
    next run removes what a killed one left there."""
    paths = [Path(p) for p in paths]
    common = os.path.commonprefix([p.name for p in paths]).rstrip(".")
    name = f".{common}.{what}.partial" if common else f".{what}.partial"
    return paths[0].parent / name


@contextlib.contextmanager
def output_set(
    paths: Mapping[K, str | os.PathLike],
    *,
    possible: Iterable[str | os.PathLike] = (),
    what: str = "outputs",
) -> Iterator[dict[K, Path]]:
    """Write a command's set of output files all or none: yield, for each of ``paths``, a
    path of the same name in a temporary folder beside it (:func:`set_folder`, one per
    output folder, so on the same file system); once the block has written them all, remove
    the files of the set that stand there now (``paths``, and the regular files of
    ``possible``, every file the command may write there, that this run does not: an
    earlier run's, :func:`remove_stale`), then rename each new file into place.

    An error or a kill while the block writes leaves the earlier set untouched (a kill also
    its temporary folder, which the next run of the same set removes first). A SIGINT
    (Ctrl-C) or SIGTERM from the removal of the earlier files to the last rename is held
    back until the renames are done (:func:`signals_deferred`, in the main thread), then
    delivered: the earlier set or this run's whole set stands. Only a SIGKILL (or a crash)
    there can leave part of this run's set, and then no earlier file beside it, as the
    earlier files go before the first rename: never files of two runs. Two runs writing
    the same set at once are not supported (the later one takes over the folder)."""
    finals = {key: Path(p) for key, p in paths.items()}
    if not finals:
        raise ValueError("output_set needs at least one output path")
    absolute = [p.absolute() for p in finals.values()]
    if len(set(absolute)) != len(absolute):
        raise ValueError(f"an output path named twice: {sorted(map(str, absolute))}")
    possible = [Path(p) for p in possible]
    by_folder: dict[Path, list[Path]] = {}
    for path in [*finals.values(), *possible]:
        by_folder.setdefault(path.absolute().parent, []).append(path)
    folders = {}
    for parent, members in by_folder.items():
        if not any(p.absolute().parent == parent for p in finals.values()):
            continue  # only possible files here: nothing to write, only stale ones to remove
        folder = set_folder(members, what)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.is_dir() and not folder.is_symlink():
            log.info("removing %s: left by an interrupted run", folder)
            shutil.rmtree(folder)
        elif folder.is_symlink() or folder.exists():
            folder.unlink()
        folder.mkdir()
        folders[parent] = folder
    temporary = {key: folders[p.absolute().parent] / p.name for key, p in finals.items()}
    try:
        yield dict(temporary)
        missing = [finals[k] for k, t in temporary.items() if not t.exists()]
        if missing:
            raise FileNotFoundError(
                f"{temporary[next(iter(temporary))].parent}: nothing was written for "
                + ", ".join(map(str, missing))
            )
        # the earlier set goes first: from here on only this run's files are added; a Ctrl-C
        # or SIGTERM now waits until the last rename (milliseconds)
        with signals_deferred():
            for path in finals.values():
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    path.unlink()
            for path in remove_stale(possible, finals.values()):
                log.info("removed %s: an earlier run's output this one does not write", path)
            for key, tmp in temporary.items():
                os.replace(tmp, finals[key])
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
