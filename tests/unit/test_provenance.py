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
        "snakemake = SimpleNamespace(rule='r', input=['in.txt'], output=['out.txt'],\n"
        "                            params={'epochs': 2, 'run_dir': 'results/runs/a'})\n"
        "def main():\n"
        "    if sys.argv[1] == 'fail':\n"
        "        raise InputError('in.txt', 1, 'bad')\n"
        "    open('out.txt', 'w').write('y')\n"
        "run_script(main)\n"
    )
    origin = provenance.origin_env("c0ffee", ["config/demo.yaml", "ov.yaml"])
    env = {**os.environ, "PYTHONPATH": str(REPO), provenance.ORIGIN_ENV: origin}

    def run(mode):
        return subprocess.run(
            [sys.executable, script, mode], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    assert run("fail").returncode == 1
    assert not (tmp_path / provenance.RECORD_DIR).exists()
    done = run("ok")
    assert done.returncode == 0, done.stderr
    [record] = (tmp_path / provenance.RECORD_DIR).glob("*.json")
    made = json.loads(record.read_text())
    assert made["inputs"][0]["path"] == "in.txt"
    # what made the outputs: the commit and config files the workflow was parsed with, and
    # the digest of the job's params
    assert made["commit"] == "c0ffee" and made["configfiles"] == ["config/demo.yaml", "ov.yaml"]
    assert made["params_sha256"] == provenance.params_digest(
        {"run_dir": "results/runs/a", "epochs": 2}
    )
    assert made["params_sha256"] != provenance.params_digest(
        {"run_dir": "results/runs/a", "epochs": 7}
    )


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


class FakeReason:
    def __init__(self, *names, params_changed=False):
        self.names, self.params_changed = names, params_changed

    def get_names(self):
        return iter(self.names)


class FakeDag:
    """What check_report_current reads of Snakemake's DAG: the jobs due and their reasons."""

    def __init__(self, due):
        self.due = due  # job -> FakeReason

    def needrun_jobs(self):
        return iter(self.due)

    def reason(self, job):
        return self.due[job]


class FakeJob(SimpleNamespace):
    __hash__ = object.__hash__


def fake_job(rule, outputs, params=None):
    return FakeJob(rule=SimpleNamespace(name=rule), output=outputs, params=params or {})


def test_a_report_with_no_job_due_goes_on(tmp_path):
    everything = fake_job("all", [])  # a target rule: no outputs, not a result
    provenance.check_report_current(FakeDag({everything: FakeReason()}), ["demo.yaml"], tmp_path)


def test_a_report_stops_naming_the_jobs_due_and_the_params_that_changed(tmp_path, monkeypatch):
    """--report under an overlay that changes train.max_epochs: the train job it would rerun is
    named with the changed key (from its record), before the jobs that only follow from it."""
    monkeypatch.chdir(tmp_path)
    metrics = "results/runs/a/metrics.json"
    then = {"run_dir": "results/runs/a", "settings": {"train": {"max_epochs": 2, "lr": 0.001}}}
    record_job("train", [], [metrics], origin=provenance.job_origin(then, {}))
    now = {"run_dir": "results/runs/a", "settings": {"train": {"max_epochs": 7, "lr": 0.001}}}
    report = fake_job("report_runs", ["results/report/runs/a.svg"])
    train = fake_job("train", [metrics, "results/runs/a/predictions.parquet"], now)
    dag = FakeDag(
        {
            report: FakeReason(provenance.DOWNSTREAM),
            train: FakeReason("params have changed since last execution", params_changed=True),
            fake_job("all", []): FakeReason(provenance.DOWNSTREAM),
        }
    )
    with pytest.raises(InputError) as err:
        provenance.check_report_current(dag, ["config/demo.yaml", "ov.yaml"])
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{metrics}: --report with config files ")
    assert "config/demo.yaml, ov.yaml: 2 job(s) would run first" in line
    assert f"train ({metrics}): params changed: settings.train.max_epochs;" in line
    assert line.index("train (") < line.index("report_runs (")
    assert "all (" not in line and "Run the workflow with the same config files first" in line


def params_change(old, new):
    """Snakemake's params change (``reason.params_changed``): the reprs only on each side."""
    return SimpleNamespace(only_old={repr(v) for v in old}, only_new={repr(v) for v in new})


def test_a_report_stop_for_params_in_another_key_order_says_so(tmp_path):
    """Params recorded (by Snakemake) in another key order than now, the same values: it
    compares reprs and says they changed, naming no key; the stop line says only their order
    differs and gives --touch. A changed value keeps Snakemake's reason."""
    splits = "results/splits/locus.tsv"
    then = {"scheme": "locus", "salt": "x", "locus_tss_distance": 1000, "f": [1, {"b": 1, "a": 2}]}
    now = {"f": [1, {"a": 2, "b": 1}], "locus_tss_distance": 1000, "salt": "x", "scheme": "locus"}
    job = fake_job("splits", [splits], {"split": now})

    def stop(change):
        reason = FakeReason("params have changed since last execution", params_changed=change)
        with pytest.raises(InputError) as err:
            provenance.check_report_current(FakeDag({job: reason}), [], tmp_path)
        return str(err.value)

    assert f"splits ({splits}): {provenance.KEY_ORDER_ONLY}." in stop(params_change([then], [now]))
    assert "params differ only in key order; `snakemake --touch`" in provenance.KEY_ORDER_ONLY
    for other in (
        {**then, "salt": "y"},  # a value
        {**then, "locus_tss_distance": 1000.0},  # a type: 1000 == 1000.0, their reprs differ
        {**then, "f": [{"b": 1, "a": 2}, 1]},  # a list's order counts
    ):
        line = stop(params_change([then], [other]))
        assert f"splits ({splits}): params have changed since last execution." in line
    assert not provenance.key_order_only(SimpleNamespace(only_old={"<object>"}, only_new={"1"}))


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_a_report_stop_without_a_record_gives_snakemakes_reason(tmp_path, extra):
    jobs = {
        fake_job("train", [f"results/runs/r{i}/metrics.json"]): FakeReason(
            "output files have to be generated"
        )
        for i in range(provenance.REPORT_SHOWN + extra)
    }
    more = f"; and {extra} more" if extra else ""
    with pytest.raises(InputError, match=rf"output files have to be generated{more}\. Run "):
        provenance.check_report_current(FakeDag(jobs), [], tmp_path)


def test_a_report_stop_names_the_root_causes_first(tmp_path):
    """In a fresh folder every job's output is missing; the jobs after the first ones have an
    input updated by another job too. The first named (and the error's file) is a first job,
    not the first of the DAG's order that follows one."""
    missing, downstream = "output files have to be generated", provenance.DOWNSTREAM
    embed = fake_job("embed_shared", ["results/embeddings/esm2/meta.json"])
    report = fake_job("report_runs", ["results/report/runs.svg"])
    train = fake_job("train", ["results/runs/a/metrics.json"])
    measurements = fake_job("demo_measurements", ["resources/demo/measurements.tsv"])
    dag = FakeDag(
        {
            embed: FakeReason(missing, downstream),
            report: FakeReason(downstream),
            train: FakeReason(downstream, "params have changed since last execution"),
            measurements: FakeReason(missing),
        }
    )
    with pytest.raises(InputError) as err:
        provenance.check_report_current(dag, [], tmp_path)
    line = str(err.value)
    assert line.startswith("resources/demo/measurements.tsv: --report ")
    named = re.findall(r"(?:: |; )(\w+) \(", line)
    assert named == ["demo_measurements", "embed_shared", "train", "report_runs"], line


@pytest.mark.parametrize(
    "value",
    [
        None,
        "not json",
        "[1]",
        '{"configfiles": []}',
        '{"commit": "a"}',
        '{"commit": "a", "configfiles": 3}',
    ],
)
def test_a_job_run_outside_the_workflow_or_a_malformed_origin_is_unknown(value):
    environ = {} if value is None else {provenance.ORIGIN_ENV: value}
    origin = provenance.job_origin({"epochs": 7}, environ)
    assert (origin["commit"], origin["configfiles"]) == ("unknown", [])
    made = {provenance.ORIGIN_ENV: provenance.origin_env("a", ["demo.yaml"])}
    assert provenance.job_origin({}, made)["commit"] == "a"


def test_changed_keys_are_dotted_paths():
    before = {"a": 1, "s": {"x": [1, 2], "y": "k"}, "gone": 0}
    now = {"a": 1, "s": {"x": [1, 3], "y": "k"}, "new": 0}
    assert provenance.changed_keys(before, now) == ["gone", "new", "s.x"]
    assert provenance.changed_keys(before, before) == []


def test_run_origins_say_which_commit_and_params_made_each_run(tmp_path, monkeypatch):
    """Two runs trained by different code, and a job recorded before records held the commit."""
    monkeypatch.chdir(tmp_path)
    env = {provenance.ORIGIN_ENV: provenance.origin_env("aaa111", ["demo.yaml"])}
    record_job("train", [], ["results/runs/a/metrics.json"], origin=provenance.job_origin({}, env))
    env = {provenance.ORIGIN_ENV: provenance.origin_env("bbb222 + uncommitted changes", [])}
    origin = provenance.job_origin({"epochs": 7}, env)
    record_job("train", [], ["results/runs/b/metrics.json"], origin=origin)
    record_job("dataset", [], ["results/dataset/d.parquet"])  # an older record: no origin
    jobs = [
        ["results/runs/b/metrics.json", "results/runs/b/history.csv"],
        ["results/runs/a/metrics.json"],
        ["results/dataset/d.parquet"],
        ["results/runs/c/metrics.json"],  # no record at all
        [],
    ]
    found = provenance.run_origins(jobs)
    assert [(r["run"], r["commit"]) for r in found["runs"]] == [
        ("a", "aaa111"),
        ("b", "bbb222 + uncommitted changes"),
        ("c", provenance.NOT_RECORDED),
    ]
    a, b, _ = found["runs"]
    assert a["params_sha256"] == provenance.params_digest({})[:12] != b["params_sha256"]
    assert a["configfiles"] == "demo.yaml"
    assert found["commits"] == {
        "aaa111": 1,
        "bbb222 + uncommitted changes": 1,
        provenance.NOT_RECORDED: 2,
    }


def test_the_landing_page_shows_what_made_each_run():
    """report/workflow.rst rendered as Snakemake renders it (jinja, then docutils): one row per
    run with its commit and params digest, and the note when more than one commit made them."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    runs = [
        {"run": r, "commit": c, "params_sha256": d, "configfiles": "demo.yaml", "recorded": "t"}
        for r, c, d in [("a_s0", "aaa111", "0123456789ab"), ("b+c_s0", "bbb222", "ba9876543210")]
    ]
    facts = {"demo": True, "data": "d", "encoders": "e", "tiny_encoders": [], "date": "now"}
    facts |= {"configfiles": ["demo.yaml"], "commit": "ccc333", "versions": {}, "cpu_kernels": "k"}
    facts |= {"runs": runs, "commits": {"aaa111": 3, "bbb222": 1}}
    config = {"report": {"provenance": facts}, "dataset": {"name": "x"}}
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string((REPO / "report/workflow.rst").read_text()).render(
        snakemake=SimpleNamespace(config=config)
    )
    body = publish_parts(text, writer="html", settings_overrides={"report_level": 2})["html_body"]
    assert "System Message" not in body and "Results made by" in body
    assert "aaa111 (3 job(s)); bbb222 (1 job(s))" in body and "more than one commit" in body
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    cells = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in rows]
    assert ["b+c_s0", "bbb222", "ba9876543210", "demo.yaml", "t"] in cells
    assert ["a_s0", "aaa111", "0123456789ab", "demo.yaml", "t"] in cells
