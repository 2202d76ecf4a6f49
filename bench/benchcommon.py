"""What several bench/ scripts share (standard library only: a bench's child process imports it
before anything else).

* ``scratch_in(parent)``: a fresh temporary folder inside the folder a user names
  (``--scratch``, ``--work``, ``--folder``), removed on the way out; the user's folder and
  whatever it already held are left alone (a bench that wiped the folder it was given
  deleted ``results/`` when given ``--folder results``).
* ``tree_prelude(tree)``: the first lines of a child process that times the ``isoflow`` of an
  older tree (``git archive`` of a revision). The checkout's editable install puts an import
  finder on ``sys.meta_path`` that answers for every ``isoflow.*`` name the older tree lacks,
  so the old package silently ran this checkout's modules where it had none of its own
  (``bench_loader.py``'s c40b196 has ``isoflow/data.py``, no ``loader.py``: the old tree
  loaded today's ``loader.py`` and failed on an import). The prelude drops that finder and
  refuses, at import, any ``isoflow`` module that would load from outside the tree.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent


@contextlib.contextmanager
def scratch_in(parent: Path | str, prefix: str = "isoflow_bench_") -> Iterator[Path]:
    """A new folder inside ``parent`` (made if missing), deleted afterwards with all it holds;
    nothing else in ``parent`` is touched."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def old_tree(revision: str, parent: Path | str | None = None) -> Iterator[Path]:
    """The ``isoflow`` package of git ``revision`` of this checkout, extracted into a
    temporary folder (``git archive``; inside ``parent`` when given, e.g. a bench's
    :func:`scratch_in` folder, else the system's temporary folder) that is deleted
    afterwards; its children import it through :func:`tree_prelude` or :func:`run_in_tree`."""
    folder = Path(tempfile.mkdtemp(prefix="isoflow_old_", dir=parent))
    try:
        archive = subprocess.run(
            ["git", "archive", revision, "isoflow"],
            cwd=BENCH.parent,
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def outside_tree(tree: Path | str, name: str, origin: str | None, locations=()) -> str | None:
    """Why module ``name`` (loaded from ``origin``, a package's ``locations``) is not the
    tree's own; None when it lies under ``tree``."""
    root = Path(tree).resolve()
    places = [p for p in [origin, *locations] if p and p not in ("built-in", "frozen")]
    for place in places:
        if not Path(place).resolve().is_relative_to(root):
            return (
                f"{name} would load from {place}, not from the tree under test {root} "
                "(that tree has no such module: name the module it has instead)"
            )
    return None


class TreeGuard(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: every ``isoflow`` module must come from ``tree``."""

    def __init__(self, tree: Path):
        self.tree = tree

    def find_spec(self, name, path, target=None):
        if name != "isoflow" and not name.startswith("isoflow."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                problem = outside_tree(
                    self.tree, name, spec.origin, spec.submodule_search_locations or ()
                )
                if problem:
                    raise ImportError(problem, name=name)
                return spec
        return None


def editable_finder(finder) -> bool:
    """setuptools' editable-install finder (``__editable___<dist>_finder``)."""
    return str(getattr(finder, "__module__", "")).startswith("__editable__")


def hold_to_tree(tree: Path | str) -> None:
    """Import ``isoflow`` from ``tree`` only: the editable finder dropped, ``tree`` first on
    sys.path, every ``isoflow`` module checked as it loads."""
    tree = Path(tree).resolve()
    sys.meta_path[:] = [f for f in sys.meta_path if not editable_finder(f)]
    sys.path.insert(0, str(tree))
    sys.meta_path.insert(0, TreeGuard(tree))
    for name, module in list(sys.modules.items()):
        if name == "isoflow" or name.startswith("isoflow."):
            problem = outside_tree(tree, name, getattr(module, "__file__", None))
            if problem:
                raise ImportError(problem, name=name)


def tree_prelude(tree: Path | str) -> str:
    """Python source to put before a ``python -c`` child's own code."""
    return (
        f"import sys\nsys.path.insert(0, {str(BENCH)!r})\nimport benchcommon\n"
        f"sys.path.remove({str(BENCH)!r})\nbenchcommon.hold_to_tree({str(Path(tree))!r})\n"
    )


def run_in_tree(tree: Path, code: str, *args: str, env: dict | None = None) -> str:
    """``python -c code args`` importing ``isoflow`` from ``tree`` only; its stdout. A failure
    ends the bench with the child's stderr (it was captured)."""
    done = subprocess.run(
        [sys.executable, "-c", tree_prelude(tree) + code, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"the child on {tree} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done.stdout


def timed(call) -> tuple[float, float]:
    """``call()``'s (wall, CPU) seconds, the CPU this process's (``time.process_time``)."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu
