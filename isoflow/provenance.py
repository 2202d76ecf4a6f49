"""Content provenance of each job's inputs: a changed input with an older mtime is caught.

Snakemake reruns a job when an input is *newer* than its outputs; its checksums (files under
``--max-checksum-file-size``) only stop a newer-but-identical input from rerunning. An input
replaced by a changed copy that keeps an older mtime (``cp -p``, ``rsync -a``, an archive
restore) reruns nothing, and the outputs silently stay stale (docs/rerun.md).

So every rule script records, when its job succeeds (``isoflow.jobs.run_script``), one JSON
file per job under ``.isoflow/provenance/``: the rule, its outputs, and for each input file its
path, size, ``mtime_ns``, ``ctime_ns`` and sha256. Once Snakemake has built the DAG of a run or
dry-run (``rules/common.smk``), ``check_records`` reads the records of the DAG's jobs only (a
record is named by its job's first output, so orphan records of renamed runs or of another
config are never read) and stats every recorded input: equal (size, mtime_ns, ctime_ns) costs
nothing more (ctime cannot be set back: a copy that kept size and mtime still differs there);
an input whose stats changed but is newer than the job's oldest output is left to Snakemake's
own mtime trigger; only an input that changed and is *not* newer is hashed. Same content (a
``touch -d`` into the past) refreshes the record; other content stops the workflow with one
line naming the input, the output and the ``touch`` that makes Snakemake rerun it.

A file is hashed once per version: digests are cached under ``.isoflow/digests/``, one small
JSON per (path, size, mtime_ns, ctime_ns, inode), written atomically and consulted by every
job and check before hashing (parallel jobs and cluster nodes reading the same genome).
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from isoflow.errors import InputError
from isoflow.files import atomic_path

log = logging.getLogger(__name__)

RECORD_DIR = ".isoflow/provenance"
DIGEST_DIR = ".isoflow/digests"
HASH = "sha256"  # fastest hashlib digest here (docs/benchmarks.md), as downloads use

Stat = tuple[int, int, int]  # (size, mtime_ns, ctime_ns)


def file_digest(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in large blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, HASH).hexdigest()


def cached_digest(path: str | os.PathLike, digest_dir: str | os.PathLike = DIGEST_DIR) -> str:
    """sha256 of ``path``, from the digest cache when this version of the file was hashed before.

    A version is (path, size, mtime_ns, ctime_ns, inode): a rewrite, a replacement or a
    ``touch`` changes at least the ctime, so a stale digest is never returned. A digest is
    cached only when the file's stats are the same after hashing as before (no write raced
    the read). An unreadable cache entry is hashed again and rewritten.
    """
    st = os.stat(path)
    key = _version(path, st)
    entry_path = _digest_path(key, digest_dir)
    try:
        entry = json.loads(entry_path.read_text())
        if [entry[k] for k in _VERSION_KEYS] == list(key):
            return entry[HASH]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = file_digest(path)
    if _version(path, os.stat(path)) == key:
        with atomic_path(entry_path) as tmp:
            tmp.write_text(json.dumps({**dict(zip(_VERSION_KEYS, key, strict=True)), HASH: digest}))
    return digest


def stat_files(paths: Iterable[str]) -> dict[str, Stat]:
    """(size, mtime_ns, ctime_ns) of each path that is a regular file; directories and absent paths
    are left out."""
    stats = {}
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if os.path.isfile(path):
            stats[str(path)] = _stat(st)
    return stats


def record_path(outputs: list[str], record_dir: str | os.PathLike = RECORD_DIR) -> Path:
    """One record per job, named by its first output (a rerun overwrites it)."""
    key = hashlib.sha256(str(outputs[0]).encode()).hexdigest()[:24]
    return Path(record_dir) / f"{key}.json"


ORIGIN_ENV = "ISOFLOW_ORIGIN"  # set by rules/common.smk at parse; job scripts inherit it


def origin_env(commit: str, configfiles: Iterable[str | os.PathLike]) -> str:
    """The value of ``ISOFLOW_ORIGIN`` that rules/common.smk sets when the workflow is parsed:
    the checkout's commit (``workflow.git_commit``) and the config files in Snakemake's order."""
    return json.dumps({"commit": commit, "configfiles": [str(p) for p in configfiles]})


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of a job's params (JSON, keys sorted; values JSON cannot hold as their str)."""
    text = json.dumps(dict(params), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def job_origin(params: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """What made a job's outputs, for its record: ``commit`` and ``configfiles`` from
    ``ISOFLOW_ORIGIN`` (``unknown`` and ``[]`` in a script run outside the workflow),
    ``params_sha256``, the digest of the job's params, and the params themselves as JSON
    holds them (so a later check names the keys that changed)."""
    raw = (os.environ if environ is None else environ).get(ORIGIN_ENV)
    try:
        made = json.loads(raw) if raw else {}
        commit, configfiles = str(made["commit"]), [str(p) for p in made["configfiles"]]
    except (ValueError, KeyError, TypeError):
        commit, configfiles = "unknown", []
    return {
        "commit": commit,
        "configfiles": configfiles,
        "params_sha256": params_digest(params),
        "params": _as_json(params),
    }


def _as_json(params: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(params), sort_keys=True, default=str))


def changed_keys(before: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the keys whose values differ between two JSON values (a key present
    on one side only included)."""
    if isinstance(before, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(before) | set(now), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in now:
                found.append(path)
            else:
                found += changed_keys(before[key], now[key], path)
        return found
    return [] if before == now else [prefix or "(params)"]


DOWNSTREAM = "input files updated by another job"  # Snakemake's Reason name
REPORT_SHOWN = 5  # stale jobs named in the report's stop line


def check_report_current(
    dag: Any, configfiles: Iterable[str], record_dir: str | os.PathLike = RECORD_DIR
) -> None:
    """Raise one InputError when ``--report`` would show results that are not those of this
    config and code: a job of the DAG (``dag.needrun_jobs()``) that has outputs would run
    first. Jobs without outputs (rule ``all``) are targets, not results. Each job is named
    with Snakemake's reason (``dag.reason(job)``); a params change also with the changed
    keys, where the job's provenance record holds the params it ran with. The root causes
    come first (:func:`_downstream_rank`), and the error is named by the first one's output."""
    stale = [job for job in dag.needrun_jobs() if job.output]
    if not stale:
        return
    stale.sort(key=lambda job: _downstream_rank(dag.reason(job)))
    parts = [
        f"{job.rule.name} ({job.output[0]}): {_why(job, dag.reason(job), record_dir)}"
        for job in stale[:REPORT_SHOWN]
    ]
    more = f"; and {len(stale) - REPORT_SHOWN} more" if len(stale) > REPORT_SHOWN else ""
    files = ", ".join(str(p) for p in configfiles) or "(none)"
    raise InputError(
        stale[0].output[0],
        None,
        f"--report with config files {files}: {len(stale)} job(s) would run first, so the "
        f"results on disk are not what this code and config make: {'; '.join(parts)}{more}. "
        f"Run the workflow with the same config files first (`snakemake -n` lists the jobs), "
        f"or build the report with the config files that made the results",
    )


RUN_METRICS = re.compile(r"(?:^|/)results/runs/([^/]+)/metrics\.json$")
NOT_RECORDED = "not recorded"


def run_origins(
    jobs: Iterable[Sequence[str]], record_dir: str | os.PathLike = RECORD_DIR
) -> dict[str, Any]:
    """What made each result the report shows, from the provenance records of ``jobs`` (the
    output lists of the report's DAG jobs): ``runs``, one row per training run (run,
    commit, params sha256, config files, date, from its train job's record; ``not
    recorded`` where the record is absent or older than these fields), and ``commits``,
    each commit that made any of the jobs with how many it made."""
    runs: dict[str, dict[str, Any]] = {}
    commits: dict[str, int] = {}
    for outputs in jobs:
        outputs = [str(p) for p in outputs]
        if not outputs:
            continue
        try:
            record = json.loads(record_path(outputs, record_dir).read_text())
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict):
            record = {}
        commit = str(record.get("commit", NOT_RECORDED))
        commits[commit] = commits.get(commit, 0) + 1
        for output in outputs:
            found = RUN_METRICS.search(output)
            if found:
                runs[found.group(1)] = {
                    "run": found.group(1),
                    "commit": commit,
                    "params_sha256": str(record.get("params_sha256", NOT_RECORDED))[:12],
                    "configfiles": ", ".join(record.get("configfiles") or [NOT_RECORDED]),
                    "recorded": str(record.get("recorded", NOT_RECORDED)),
                }
    return {"runs": [runs[r] for r in sorted(runs)], "commits": commits}


# Snakemake compares params by repr: the same values with a dict's keys in another order
# (params recorded before the workflow sorted them) read as changed
KEY_ORDER_ONLY = "params differ only in key order; `snakemake --touch` marks them current"


def _downstream_rank(reason: Any) -> int:
    """Where a due job goes in the stop line (a stable sort, so in DAG order within each):
    0, the root causes, no input updated by another job (a missing output of a first job,
    a changed param or input); 1, a reason of its own too; 2, only following another job.
    In a fresh folder every job's output is missing, and only the first jobs lack
    ``DOWNSTREAM``: they, not the jobs after them, come first."""
    names = [str(name) for name in reason.get_names()]
    if DOWNSTREAM not in names:
        return 0
    return 2 if names == [DOWNSTREAM] else 1


def _why(job: Any, reason: Any, record_dir: str | os.PathLike) -> str:
    names = [str(name) for name in reason.get_names()]
    change = getattr(reason, "params_changed", False)
    if change:
        keys = _changed_params(job, record_dir)
        said = (
            f"params changed: {', '.join(keys)}"
            if keys
            else KEY_ORDER_ONLY
            if key_order_only(change)
            else None
        )
        if said:
            names = [said if name.startswith("params have") else name for name in names]
    return ", ".join(names) or str(reason)


def key_order_only(change: Any) -> bool:
    """Whether a Snakemake params change (its ``only_old`` / ``only_new``: the reprs of the
    params recorded and of those now that differ) changes no value, only the order of some
    dict's keys: each side's reprs read back as literals and written with every dict's keys
    sorted are the same (so 1 against 1.0, a tuple against a list, still differ). False
    when a repr does not read back."""
    old, new = getattr(change, "only_old", None), getattr(change, "only_new", None)
    if not old or not new:
        return False
    try:
        return sorted(map(_sorted_repr, old)) == sorted(map(_sorted_repr, new))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _sorted_repr(text: str) -> str:
    def ordered(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ordered(value[k]) for k in sorted(value, key=repr)}
        if isinstance(value, list | tuple):
            return type(value)(ordered(v) for v in value)
        return value

    return repr(ordered(ast.literal_eval(text)))


def _changed_params(job: Any, record_dir: str | os.PathLike) -> list[str]:
    path = record_path([str(p) for p in job.output], record_dir)
    try:
        recorded = json.loads(path.read_text())["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return changed_keys(recorded, _as_json(dict(job.params.items())))


def record_job(
    rule: str,
    inputs: Iterable[str],
    outputs: Iterable[str],
    before: dict[str, Stat] | None = None,
    record_dir: str | os.PathLike = RECORD_DIR,
    digest_dir: str | os.PathLike = DIGEST_DIR,
    origin: Mapping[str, Any] | None = None,
) -> Path | None:
    """Write the provenance record of a job that just succeeded; return its path.

    ``before``: the inputs' stats when the job started; an input whose stats changed while
    the job ran is left out of the record (which content the job read is unknown), so it is
    never compared. Digests come from ``cached_digest``: one hash per version of a file,
    whichever job reads it first. ``origin``: what made the outputs (``job_origin``: the
    commit, config files and params digest), stored beside the inputs.
    """
    outputs = [str(path) for path in outputs]
    if not outputs:
        return None
    entries = []
    for path, stat in stat_files(str(p) for p in inputs).items():
        if before is not None and before.get(path) != stat:
            log.warning("%s changed while the job ran; not recorded", path)
            continue
        digest = cached_digest(path, digest_dir)
        if stat_files([path]).get(path) != stat:
            log.warning("%s changed while the job ran; not recorded", path)
            continue
        size, mtime_ns, ctime_ns = stat
        entries.append(
            {"path": path, "size": size, "mtime_ns": mtime_ns, "ctime_ns": ctime_ns, HASH: digest}
        )
    record = {
        "rule": rule,
        "outputs": outputs,
        "inputs": entries,
        **(dict(origin) if origin else {}),
        "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path = record_path(outputs, record_dir)
    _write(path, record)
    return path


def check_records(
    jobs: Iterable[Sequence[str]] | None = None,
    record_dir: str | os.PathLike = RECORD_DIR,
    digest_dir: str | os.PathLike = DIGEST_DIR,
) -> None:
    """Raise one InputError if a recorded input changed content without a newer mtime.

    ``jobs``: the output lists of the jobs to check (the DAG's jobs that will not run
    anyway); only their records are read, so records of jobs outside the DAG (another
    target, a renamed run, another config in the same workdir) are ignored. ``None``: every
    record. Costs one stat per recorded input and output while their stats are as recorded.
    Records whose outputs are gone are skipped (Snakemake reruns those jobs).
    """
    if jobs is None:
        paths = sorted(Path(record_dir).glob("*.json"))
    else:
        paths = sorted({record_path(list(outputs), record_dir) for outputs in jobs if outputs})
    changed: dict[str, tuple[str, str]] = {}  # input -> (output, rule)
    for path in paths:
        if not path.exists():
            continue  # a job that never finished through run_script
        record = _read(path)
        oldest = _oldest_output(record["outputs"])
        if oldest is None:
            continue
        refreshed = False
        for entry in record["inputs"]:
            source = entry["path"]
            try:
                st = os.stat(source)
            except FileNotFoundError:
                continue  # Snakemake reports a missing input itself
            if _stat(st) == _recorded(entry):
                continue
            if st.st_mtime_ns > oldest:
                continue  # newer than the output: Snakemake's mtime trigger sees it
            if source in changed or cached_digest(source, digest_dir) != entry[HASH]:
                changed.setdefault(source, (record["outputs"][0], record["rule"]))
            else:  # same content, other stats (touch -d past): remember the new stats
                entry["size"], entry["mtime_ns"], entry["ctime_ns"] = _stat(st)
                refreshed = True
        if refreshed:
            _write(path, record)
    if changed:
        first, (output, rule) = next(iter(changed.items()))
        more = f" (and {len(changed) - 1} more input(s) likewise)" if len(changed) > 1 else ""
        touch = "touch " + " ".join(shlex.quote(p) for p in changed)
        raise InputError(
            first,
            None,
            f"content changed since it made {output} (rule {rule}), but its mtime is not newer "
            f"than that output, so Snakemake would not rerun it{more}; run `{touch}` to rerun "
            f"what depends on it",
        )


def _oldest_output(outputs: list[str]) -> int | None:
    times = []
    for output in outputs:
        try:
            times.append(os.stat(output).st_mtime_ns)
        except FileNotFoundError:
            return None
    return min(times) if times else None


def _stat(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _recorded(entry: dict) -> Stat:
    return (entry["size"], entry["mtime_ns"], entry["ctime_ns"])


_VERSION_KEYS = ("path", "size", "mtime_ns", "ctime_ns", "inode")


def _version(path, st: os.stat_result) -> tuple[str, int, int, int, int]:
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _digest_path(key: tuple, digest_dir) -> Path:
    name = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:32]
    return Path(digest_dir) / f"{name}.json"


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        _ = [(e["path"], _recorded(e), e[HASH]) for e in record["inputs"]]
        _ = (record["outputs"][0], record["rule"])
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise InputError(
            path,
            None,
            f"unreadable provenance record ({type(err).__name__}: {err}): delete it "
            f"(`rm {shlex.quote(str(path))}`); the next run of its job writes a new one",
        ) from err
    return record


def _write(path: Path, record: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
