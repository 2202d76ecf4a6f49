"""isoflow.files: no rule leaves half an output."""

from pathlib import Path

import pytest

from isoflow.files import atomic_path


def test_atomic_path_renames_only_on_success(tmp_path):
    out = tmp_path / "sub" / "table.tsv"
    with atomic_path(out) as tmp:
        tmp.write_text("a\n")
        assert not out.exists()
    assert out.read_text() == "a\n"

    with pytest.raises(RuntimeError, match="^boom$"), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")  # the caller's error comes through, not one of cleaning up
    assert out.read_text() == "a\n"
    assert [p.name for p in out.parent.iterdir()] == ["table.tsv"]


def test_atomic_path_directory(tmp_path):
    out = tmp_path / "cache"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "shard0.npy").write_bytes(b"x")
    assert (out / "shard0.npy").exists()
    with pytest.raises(ValueError, match="^half a cache$"), atomic_path(out) as tmp:
        tmp.mkdir()
        raise ValueError("half a cache")
    assert (out / "shard0.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_a_folder_replaced_is_never_left_half_removed(tmp_path, monkeypatch):
    """The earlier folder (finetune's -o, a bundle, a cache) was removed file by file before
    the new one took its place: a kill then left part of it, which `isoflow finetune`
    refused on the next run as not an earlier result."""
    import shutil
    from pathlib import Path

    out = tmp_path / "ft"
    out.mkdir()
    for name in "abc":
        (out / name).write_text("earlier")

    def killed(path, *args, **kwargs):
        next(Path(path).iterdir()).unlink()  # a file gone, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt), atomic_path(out) as tmp:
        tmp.mkdir()
        for name in "abcd":
            (tmp / name).write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == dict.fromkeys("abcd", "new")


def test_atomic_path_requires_something_written(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"nothing was written for {tmp_path / 'x'}$"):
        with atomic_path(tmp_path / "x"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_file_written_over_a_link_to_a_folder_replaces_the_link_only(tmp_path):
    # final.is_dir() follows the link: only the is_symlink() guard keeps atomic_path from
    # calling rmtree on it (which refuses a link: the write would fail); the folder it
    # points at keeps its files
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("x")
    (tmp_path / "out").symlink_to(tmp_path / "folder")
    with atomic_path(tmp_path / "out") as tmp:
        tmp.write_text("new")
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out").read_text() == "new"
    assert (tmp_path / "folder" / "keep.txt").read_text() == "x"


# ---------------------------------------------------------------- a command's output paths


def test_an_output_file_over_a_folder_or_an_input_is_refused(tmp_path):
    from isoflow.errors import InputError
    from isoflow.files import check_output_files

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("x")
    table = tmp_path / "in.tsv"
    table.write_text("x")
    with pytest.raises(InputError, match="would replace this existing folder") as err:
        check_output_files([tmp_path / "a.tsv", tmp_path / "results"])
    assert str(err.value).startswith(f"{tmp_path / 'results'}: --out:")
    with pytest.raises(InputError, match="is an input"):
        check_output_files([table], inputs=[None, tmp_path / "." / "in.tsv"])
    check_output_files([tmp_path / "new.tsv", table], inputs=[tmp_path / "other.tsv", None])
    assert (tmp_path / "results" / "keep.txt").is_file()


def _earlier(folder):
    return (folder / "stamp").is_file()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"stranger.txt": "x"}, "holds stranger.txt, not an earlier output"),
        ({"out.tsv": "x"}, "is not an earlier output"),  # the names, without the mark
        ({"out.tsv": "x", "stamp": "", "more": ""}, "holds more, not an earlier output"),
    ],
)
def test_an_output_folder_that_is_not_an_earlier_output_is_refused(tmp_path, layout, message):
    from isoflow.errors import InputError
    from isoflow.files import check_output_folder

    out = tmp_path / "out"
    out.mkdir()
    for name, text in layout.items():
        (out / name).write_text(text)
    with pytest.raises(InputError, match=message) as err:
        check_output_folder(out, names=["out.tsv", "stamp"], earlier=_earlier)
    assert "choose a new or empty folder" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == sorted(layout)


def test_an_output_folder_absent_empty_or_earlier_is_accepted(tmp_path):
    from isoflow.files import check_output_folder

    names = ["out.tsv", "stamp"]
    check_output_folder(tmp_path / "absent", names=names, earlier=_earlier)
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", names=names, earlier=_earlier)
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "out.tsv").write_text("x")
    (tmp_path / "earlier" / "stamp").write_text("")
    check_output_folder(tmp_path / "earlier", names=names, earlier=_earlier)


def test_an_output_folder_over_an_input_a_file_or_a_link_is_refused(tmp_path):
    from isoflow.errors import InputError
    from isoflow.files import check_output_folder

    bundle = tmp_path / "models" / "run"
    bundle.mkdir(parents=True)
    kw = {"names": ["out.tsv"], "earlier": lambda p: True}
    for out in (tmp_path / "models", bundle, bundle / "sub"):  # holds, is, lies inside
        with pytest.raises(InputError, match=f"write into the input {bundle}"):
            check_output_folder(out, inputs=[None, bundle], **kw)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="an existing file, not a folder"):
        check_output_folder(tmp_path / "file", **kw)
    (tmp_path / "link").symlink_to(tmp_path / "models")
    with pytest.raises(InputError, match="a symbolic link"):
        check_output_folder(tmp_path / "link", **kw)


def test_an_output_prefix_needs_a_name_and_lies_outside_input_folders(tmp_path):
    from isoflow.errors import InputError
    from isoflow.files import check_output_files, check_prefix

    # `--out d2/` and `--out ""` wrote hidden files (d2/.scores.tsv, ./.scores.tsv)
    for prefix in ("", "d2/", ".", "a/.."):
        with pytest.raises(InputError, match="--out: needs a file name after the folder"):
            check_prefix(prefix)
    check_prefix("d2/s")
    # `--out M0/s` wrote into the input bundle's folder
    bundle = tmp_path / "M0"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match=f"--out: lies inside the input folder {bundle}"):
        check_output_files([bundle / "s.scores.tsv"], inputs=[bundle])
    check_output_files([tmp_path / "out" / "s.scores.tsv"], inputs=[bundle])
    # a folder of GenBank maps: scores beside them are fine (they were, before the check),
    # a GenBank output there would be read as an input by the next run
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "c1.gb").write_text("LOCUS")
    check_output_files([maps / "scores.scores.tsv"], inputs=[maps])
    with pytest.raises(InputError, match=f"--out: lies inside the input folder {maps}"):
        check_output_files([maps / "d.designs.gb"], inputs=[maps])


def test_remove_stale_removes_only_the_commands_files_not_written(tmp_path):
    from isoflow.files import remove_stale

    names = ["s.scores.tsv", "s.heatmap.svg", "s.heatmap.png", "s.specificity.tsv"]
    for name in [*names, "s.other.txt"]:
        (tmp_path / name).write_text("x")
    written = [tmp_path / "s.scores.tsv", tmp_path / "s.heatmap.png"]
    removed = remove_stale([tmp_path / n for n in names], written)
    assert sorted(p.name for p in removed) == ["s.heatmap.svg", "s.specificity.tsv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s.heatmap.png",
        "s.other.txt",
        "s.scores.tsv",
    ]


# ---------------------------------------------------------------- a command's output set


def _set(folder, prefix="s"):
    return {k: folder / f"{prefix}.{k}.tsv" for k in ("a", "b", "c")}


def _write_all(tmp, text):
    for path in tmp.values():
        path.write_text(text)


def test_output_set_puts_every_file_in_place_and_removes_the_stale_ones(tmp_path):
    from isoflow.files import output_set

    stale = tmp_path / "s.d.tsv"
    stale.write_text("old")
    (tmp_path / "s.notes.txt").write_text("mine")  # not one of the command's names
    paths = _set(tmp_path / "new")  # a folder not made yet
    with output_set(paths, possible=[stale], what="t") as tmp:
        assert set(tmp) == set(paths)
        assert all(t.name == paths[k].name and t.parent != paths[k].parent for k, t in tmp.items())
        _write_all(tmp, "new")
        assert not any(p.exists() for p in paths.values())  # in place only when all are
    assert all(p.read_text() == "new" for p in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "s.notes.txt"]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [p.name for p in paths.values()]


@pytest.mark.parametrize("written", [0, 2])
def test_an_error_while_a_set_is_written_leaves_the_earlier_set_whole(tmp_path, written):
    from isoflow.files import output_set

    paths = _set(tmp_path)
    _write_all(paths, "earlier")
    possible = [tmp_path / "s.d.tsv"]
    possible[0].write_text("earlier")
    with pytest.raises(RuntimeError, match="^boom$"), output_set(paths, possible=possible) as tmp:
        for path in list(tmp.values())[:written]:
            path.write_text("new")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s.a.tsv",
        "s.b.tsv",
        "s.c.tsv",
        "s.d.tsv",
    ]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"earlier"}
    # a file the block did not write: an error before anything is replaced
    with pytest.raises(FileNotFoundError, match="nothing was written for .*s.b.tsv"):
        with output_set(paths) as tmp:
            tmp["a"].write_text("new")
            tmp["c"].write_text("new")
    assert {p.read_text() for p in tmp_path.iterdir()} == {"earlier"}


def test_a_folder_a_killed_run_left_is_cleared_by_the_next(tmp_path):
    from isoflow.files import output_set, set_folder

    paths = _set(tmp_path)
    left = set_folder(paths.values(), "t")
    assert left == tmp_path / ".s.t.partial"
    left.mkdir()
    (left / "s.a.tsv").write_text("killed")
    (left / ".s.a.tsv.x1.tmp").write_text("half")
    with output_set(paths, what="t") as tmp:
        assert list(left.iterdir()) == []  # nothing of the killed run is taken for this one
        _write_all(tmp, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.a.tsv", "s.b.tsv", "s.c.tsv"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"new"}
    # another prefix or command beside it has a folder of its own
    assert set_folder(_set(tmp_path, "s2").values(), "t") == tmp_path / ".s2.t.partial"
    assert set_folder(paths.values(), "u") != left


def test_the_earlier_set_goes_before_the_first_new_file_is_put_in_place(tmp_path, monkeypatch):
    """A SIGKILL among the renames (which no handler defers) leaves part of the new set,
    never an earlier file beside it."""
    import os

    from isoflow.files import output_set

    paths = _set(tmp_path)
    _write_all(paths, "earlier")
    replace = os.replace
    calls = []

    def killed_after_one(src, dst):
        if calls:
            raise KeyboardInterrupt  # as a SIGKILL here: nothing after it runs
        calls.append(dst)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt), output_set(paths) as tmp:
        _write_all(tmp, "new")
    left = {p.name: p.read_text() for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert left == {paths["a"].name: "new"}


class Killed(BaseException):
    """What a SIGKILL would be, here where the test can look afterwards."""


def test_a_kill_while_an_old_folder_is_deleted_leaves_no_half_output(tmp_path, monkeypatch):
    """Replacing an output folder: the old one is renamed aside before the new one goes in,
    and deleted only then, so a kill during the (long) delete leaves the new output whole
    at the path, not half of the old one; the next replacement removes what is left aside."""
    import shutil

    import isoflow.files

    out = tmp_path / "cache"
    out.mkdir()
    for i in range(5):
        (out / f"old{i}").write_text("old")
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        sorted(Path(path).iterdir())[0].unlink()  # one file deleted, then the kill
        raise Killed

    monkeypatch.setattr(isoflow.files.shutil, "rmtree", killed_midway)
    with pytest.raises(Killed), atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    monkeypatch.setattr(isoflow.files.shutil, "rmtree", real_rmtree)
    assert sorted(p.name for p in out.iterdir()) == ["new"], "the new output, whole"
    (aside,) = [p for p in tmp_path.iterdir() if p.name != "cache"]
    assert aside.name.startswith(".cache.") and aside.name.endswith(".old")

    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "newer").write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"], "the leftover removed"
    assert sorted(p.name for p in out.iterdir()) == ["newer"]


def test_a_leftover_of_the_version_before_is_removed_too(tmp_path):
    """The version before named its aside ``.{name}.XXXXXXXX.tmp.old`` (the temporary's
    name + .old): such a folder, a whole earlier bundle or cache, goes at the next
    replacement too."""
    old = tmp_path / ".cache.abcd1234.tmp.old"
    old.mkdir()
    (old / "shard.npy").write_text("old")
    with atomic_path(tmp_path / "cache") as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_a_leftover_of_another_name_is_not_removed(tmp_path):
    """Only ``.{name}.XXXXXXXX.old`` (the aside of this very path) is removed, not the
    aside of an output whose name starts with this one's, nor a user's hidden file."""
    others = [tmp_path / ".cache.v2.abcdefgh.old", tmp_path / ".cache.notes.old"]
    for other in others:
        other.write_text("keep")
    with atomic_path(tmp_path / "cache") as tmp:
        tmp.write_text("x")
    assert all(other.read_text() == "keep" for other in others)


@pytest.mark.parametrize("folder", [False, True])
def test_fsync_reaches_the_disk_before_the_rename(tmp_path, monkeypatch, folder):
    """``fsync=True``: every new file (and folder) is synced while still under its temporary
    name, and the parent folder after the rename (so the rename itself is on disk)."""
    import os

    synced = []
    real = os.fsync

    def record(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (tmp_path / "out").exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    with atomic_path(tmp_path / "out", fsync=True) as tmp:
        if folder:
            tmp.mkdir()
            (tmp / "a.npy").write_bytes(b"data")
        else:
            tmp.write_bytes(b"data")
    names = [(os.path.basename(p), existed) for p, existed in synced]
    new = [(n, existed) for n, existed in names if n.startswith(".out.") or n == "a.npy"]
    assert len(new) == (2 if folder else 1) and not any(existed for _, existed in new)
    assert names[-1] == (tmp_path.name, True), "the folder holding the rename, last"
    synced.clear()
    with atomic_path(tmp_path / "plain") as tmp:
        tmp.write_bytes(b"data")
    assert synced == [], "without fsync=True nothing waits for the disk"


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_among_the_renames_waits_until_the_set_is_whole(tmp_path, monkeypatch, signum):
    """A Ctrl-C (or SIGTERM) after the earlier set was removed is held back until every new
    file is in place, then delivered to the handler that stood before."""
    import os
    import signal

    from isoflow.files import output_set

    signum = getattr(signal, signum)
    paths = _set(tmp_path)
    _write_all(paths, "earlier")
    replace = os.replace
    calls = []

    def interrupted_at_the_first(src, dst):
        if not calls:
            os.kill(os.getpid(), signum)
        calls.append(dst)
        replace(src, dst)

    class Terminated(BaseException):
        pass

    def terminated(signum, frame):
        raise Terminated

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(os, "replace", interrupted_at_the_first)
    if signum == signal.SIGTERM:
        previous = signal.signal(signal.SIGTERM, terminated)  # as a handler a job installs
    stopped = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    try:
        with pytest.raises(stopped), output_set(paths) as tmp:
            _write_all(tmp, "new")
    finally:
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, previous)
    assert len(calls) == 3  # every rename ran before the signal was delivered
    left = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert left == {p.name: "new" for p in paths.values()}  # no temporary folder left either
    assert signal.getsignal(signal.SIGINT) is before  # the handler put back


def test_signals_are_not_held_back_outside_the_main_thread(tmp_path):
    import signal
    import threading

    from isoflow.files import signals_deferred

    seen = []

    def in_a_thread():
        with signals_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]
