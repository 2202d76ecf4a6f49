"""isoflow.provenance: a changed input with an older mtime is caught; nothing else costs a hash."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.paths import REPO
from isoflow import provenance
from isoflow.errors import InputError
from isoflow.provenance import check_records, record_job

HOUR = 3600 * 10**9


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A finished job in tmp_path: input made at t0, output at t0 + 1 h, its record."""
    monkeypatch.chdir(tmp_path)
    source, output = Path("data/annotation.gtf"), Path("results/transcripts.tsv")
    source.parent.mkdir()
    output.parent.mkdir()
    source.write_text("chr1\texon\t1\t100\n")
    output.write_text("T1\n")
    t0 = 1_700_000_000 * 10**9
    os.utime(source, ns=(t0, t0))
    os.utime(output, ns=(t0 + HOUR, t0 + HOUR))
    record = record_job("annotation", [str(source)], [str(output)])
    return SimpleNamespace(source=source, output=output, t0=t0, record=record)


def forbid_hashing(monkeypatch):
    def fail(path):
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(provenance, "file_digest", fail)


def test_the_record_holds_stats_and_content_hash(job):
    record = json.loads(job.record.read_text())
    assert record["rule"] == "annotation" and record["outputs"] == [str(job.output)]
    [entry] = record["inputs"]
    assert entry["path"] == str(job.source)
    st = job.source.stat()
    assert (entry["size"], entry["mtime_ns"], entry["ctime_ns"]) == (
        st.st_size,
        job.t0,
        st.st_ctime_ns,
    )
    assert entry["sha256"] == provenance.file_digest(job.source)
    assert job.record.parent == Path(provenance.RECORD_DIR)


def test_no_record_directory_is_nothing_to_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_records()
    assert not (tmp_path / ".isoflow").exists()


def test_unchanged_stats_cost_no_hash(job, monkeypatch):
    forbid_hashing(monkeypatch)
    check_records()


def test_a_changed_copy_with_an_older_mtime_stops_in_one_line(job):
    job.source.write_text("chr1\texon\t1\t200\n")  # other content, same size
    os.utime(job.source, ns=(job.t0 - HOUR, job.t0 - HOUR))  # cp -p of an older file
    with pytest.raises(InputError) as err:
        check_records()
    assert str(err.value) == (
        f"{job.source}: content changed since it made {job.output} (rule annotation), but its "
        f"mtime is not newer than that output, so Snakemake would not rerun it; run "
        f"`touch {job.source}` to rerun what depends on it"
    )


def test_the_touch_it_names_clears_it(job):
    job.source.write_text("chr1\texon\t1\t200\n")  # same size, and the mtime set back too:
    os.utime(job.source, ns=(job.t0, job.t0))  # only the ctime tells it apart
    touch = re.escape(f"run `touch {job.source}` to")
    with pytest.raises(InputError, match=rf"content changed since it made .* {touch}"):
        check_records()
    job.source.touch()  # now newer than the output: Snakemake reruns, the check steps aside
    check_records()


def test_same_content_with_an_older_mtime_passes_and_is_hashed_once(job, monkeypatch):
    os.utime(job.source, ns=(job.t0 - HOUR, job.t0 - HOUR))  # touch -d past
    check_records()
    assert json.loads(job.record.read_text())["inputs"][0]["mtime_ns"] == job.t0 - HOUR
    forbid_hashing(monkeypatch)
    check_records()  # the refreshed record makes the next parse a stat again


def test_a_newer_changed_input_is_left_to_snakemake(job, monkeypatch):
    job.source.write_text("changed and newer\n")
    forbid_hashing(monkeypatch)
    check_records()


def test_missing_outputs_or_inputs_skip_the_record(job, monkeypatch):
    job.source.write_text("changed\n")
    os.utime(job.source, ns=(job.t0, job.t0))
    job.output.unlink()  # Snakemake reruns the job anyway
    check_records()
    job.output.write_text("T1\n")
    job.source.unlink()  # Snakemake reports the missing input itself
    check_records()


def test_several_changed_inputs_are_one_line_with_one_touch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["a.gtf", "b c.tsv"]
    for name in [*names, "out.txt"]:
        Path(name).write_text(name)
    os.utime("out.txt", ns=(2 * HOUR, 2 * HOUR))
    for name in names:
        os.utime(name, ns=(HOUR, HOUR))
    record_job("r", names, ["out.txt"])
    for name in names:
        Path(name).write_text(name.upper())
        os.utime(name, ns=(HOUR, HOUR))
    with pytest.raises(InputError) as err:
        check_records()
    message = str(err.value)
    assert "\n" not in message and message.startswith("a.gtf: content changed")
    assert "(and 1 more input(s) likewise)" in message
    assert "run `touch a.gtf 'b c.tsv'`" in message


def test_an_unreadable_record_names_itself_and_the_fix(job):
    job.record.write_text('{"rule": "annotation", "outputs": []}')
    with pytest.raises(InputError) as err:
        check_records()
    assert str(err.value).startswith(f"{job.record}: unreadable provenance record")
    assert f"`rm {job.record}`" in str(err.value)


def test_an_input_that_changes_while_the_job_runs_is_not_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("in.txt").write_text("first")
    before = provenance.stat_files(["in.txt", "absent.txt", "."])
    assert list(before) == ["in.txt"]  # absent files and directories are not recorded
    Path("in.txt").write_text("second, longer")
    path = record_job("r", ["in.txt"], ["out.txt"], before)
    assert json.loads(path.read_text())["inputs"] == []


def test_a_known_hash_is_reused(job, monkeypatch):
    forbid_hashing(monkeypatch)
    record_job("sequences", [str(job.source)], ["results/other.fa"])


def test_run_script_records_only_a_job_that_succeeds(tmp_path):
    """The rule-script path: run_script finds the `snakemake` object in the script's globals."""
    (tmp_path / "in.txt").write_text("x")
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from isoflow.jobs import run_script\n"
        "from isoflow.errors import InputError\n"
        "snakemake = SimpleNamespace(rule='r', input=['in.txt'], output=['out.txt'])\n"
        "def main():\n"
        "    if sys.argv[1] == 'fail':\n"
        "        raise InputError('in.txt', 1, 'bad')\n"
        "    open('out.txt', 'w').write('y')\n"
        "run_script(main)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(mode):
        return subprocess.run(
            [sys.executable, script, mode], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    assert run("fail").returncode == 1
    assert not (tmp_path / provenance.RECORD_DIR).exists()
    done = run("ok")
    assert done.returncode == 0, done.stderr
    [record] = (tmp_path / provenance.RECORD_DIR).glob("*.json")
    assert json.loads(record.read_text())["inputs"][0]["path"] == "in.txt"


def make_stale(job):
    job.source.write_text("chr1\texon\t1\t200\n")
    os.utime(job.source, ns=(job.t0 - HOUR, job.t0 - HOUR))


def test_only_the_records_of_the_given_jobs_are_checked(job):
    """Records of jobs outside the DAG (another target, a renamed run, another config) are
    never read, not even an unreadable one."""
    make_stale(job)
    Path(provenance.RECORD_DIR, "orphan.json").write_text("not json")
    check_records(jobs=[["results/other.tsv"], []])
    with pytest.raises(InputError, match="content changed"):
        check_records(jobs=[[str(job.output)]])


def test_a_job_whose_record_is_absent_is_nothing_to_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_records(jobs=[["results/never_recorded.tsv"]])


def test_a_file_is_hashed_once_even_before_any_record_exists(job, monkeypatch):
    """Parallel jobs that finish before the first record is written share the digest cache."""
    for record in Path(provenance.RECORD_DIR).glob("*.json"):
        record.unlink()
    forbid_hashing(monkeypatch)
    record_job("sequences", [str(job.source)], ["results/other.fa"])


def test_a_rewritten_file_is_hashed_again(job):
    digest = provenance.cached_digest(job.source)
    job.source.write_text("chr1\texon\t1\t200\n")  # same size
    os.utime(job.source, ns=(job.t0, job.t0))  # same mtime: the ctime and content differ
    assert provenance.cached_digest(job.source) == provenance.file_digest(job.source) != digest


def test_an_unreadable_digest_entry_is_hashed_again(job):
    [entry] = Path(provenance.DIGEST_DIR).glob("*.json")
    entry.write_text("{")
    assert provenance.cached_digest(job.source) == provenance.file_digest(job.source)
    assert json.loads(entry.read_text())["sha256"] == provenance.file_digest(job.source)


def test_a_file_changing_while_it_is_hashed_is_not_cached(job, monkeypatch):
    real = provenance.file_digest

    def digest_then_change(path):
        value = real(path)
        Path(path).write_text("changed meanwhile\n")
        return value

    for entry in Path(provenance.DIGEST_DIR).glob("*.json"):
        entry.unlink()
    monkeypatch.setattr(provenance, "file_digest", digest_then_change)
    provenance.cached_digest(job.source)
    assert not list(Path(provenance.DIGEST_DIR).glob("*.json"))


def test_recording_a_job_reads_no_other_record(job, monkeypatch):
    """O(inputs of the job): other records are neither listed nor parsed."""
    monkeypatch.setattr(provenance, "_read", lambda path: pytest.fail(f"{path} was read"))
    record_job("sequences", [str(job.source)], ["results/other.fa"])


def test_a_digest_entry_of_another_version_is_not_trusted(job):
    """The entry's own key is compared, not only its file name."""
    [entry] = Path(provenance.DIGEST_DIR).glob("*.json")
    stored = json.loads(entry.read_text())
    entry.write_text(json.dumps({**stored, "inode": stored["inode"] + 1, "sha256": "0" * 64}))
    assert provenance.cached_digest(job.source) == provenance.file_digest(job.source)
