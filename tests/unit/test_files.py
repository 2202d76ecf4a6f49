"""isoflow.files: no rule leaves half an output."""

import pytest

from isoflow.files import atomic_path


def test_atomic_path_renames_only_on_success(tmp_path):
    out = tmp_path / "sub" / "table.tsv"
    with atomic_path(out) as tmp:
        tmp.write_text("a\n")
        assert not out.exists()
    assert out.read_text() == "a\n"

    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "a\n"
    assert [p.name for p in out.parent.iterdir()] == ["table.tsv"]


def test_atomic_path_directory(tmp_path):
    out = tmp_path / "cache"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "shard0.npy").write_bytes(b"x")
    assert (out / "shard0.npy").exists()
    with pytest.raises(ValueError), atomic_path(out) as tmp:
        tmp.mkdir()
        raise ValueError
    assert (out / "shard0.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_atomic_path_requires_something_written(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x"):
        pass
    assert list(tmp_path.iterdir()) == []
