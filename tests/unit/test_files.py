"""isoflow.files: no rule leaves half an output."""

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
