"""Pretrained encoder weights: download into an encoder's weights folder
(:func:`isoflow.workflow.weights_dir`: the spec's ``path``, else ``resources/models/<name>/``)
and record where they came from.

Hugging Face repositories (Enformer, Borzoi, Nucleotide Transformer) are resolved to a
commit first and then downloaded at exactly that commit with
``huggingface_hub.snapshot_download``; ESM-2 comes from fair-esm's URLs as ``.pt`` files.
Each model folder gets ``isoflow_source.json``: the repository or URLs, the requested
revision, and what was actually seen — the resolved commit hash and the sha256 of the
snapshot's code files (what ``trust_remote_code`` runs: :func:`check_code` checks them before
it does), or the sha256 of every downloaded file. The folder appears only when complete
(written beside it, then renamed).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isoflow.errors import InputError
from isoflow.files import atomic_path

SOURCE_FILE = "isoflow_source.json"
ESM_MODEL_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{model}.pt"
ESM_REGRESSION_URL = (
    "https://dl.fbaipublicfiles.com/fair-esm/regression/{model}-contact-regression.pt"
)
# Weights in other frameworks that a PyTorch run never reads.
# Weights of other frameworks no loader here reads: TensorFlow, Flax, ONNX, TFLite, and the
# `jax_model/` folder the Nucleotide Transformer v2 repositories ship beside the PyTorch weights.
DEFAULT_IGNORE = [
    "*.h5",
    "*.msgpack",
    "*.ckpt*",
    "*.onnx",
    "tf_model*",
    "flax_model*",
    "*.tflite",
    "jax_model/*",
]

# What transformers' trust_remote_code runs from a Hub snapshot (its *.py files) and what
# picks the classes to run (config.json's auto_map): their sha256 is recorded at download
# (record key CODE_KEY) and checked before the code runs (check_code).
CODE_KEY = "code_sha256"

# The spec keys download_encoder reads: what a weights folder holds depends on these alone.
HUB_KEYS = ("repo", "revision", "allow_patterns", "ignore_patterns")
ESM_KEYS = ("esm_model", "url")

log = logging.getLogger("isoflow.weights")


def download_source(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of an encoder spec that say which files :func:`download_encoder` fetches:
    ``esm_model`` and ``url`` for fair-esm, else the Hub's ``repo``, ``revision`` (``main``
    when unset) and the file patterns. The rest of a spec (pooling, fine-tuning, limits)
    leaves the download as it is."""
    if spec.get("esm_model"):
        return {key: spec[key] for key in ESM_KEYS if spec.get(key) is not None}
    source = {key: spec[key] for key in HUB_KEYS if spec.get(key) is not None}
    if "repo" in source:
        source["revision"] = str(spec.get("revision") or "main")
    return source


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _pinned(revision: str, commit: str) -> bool:
    """``revision`` names exactly ``commit``: the full hash, or a prefix of it of at least 7
    hex digits (as ``git`` abbreviates), which the Hub resolves to that commit only."""
    revision = revision.lower()
    return revision == commit or (
        len(revision) >= 7
        and all(c in "0123456789abcdef" for c in revision)
        and commit.startswith(revision)
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Unreachable(Exception):
    """A download that failed on the network (no route, DNS, refused, timed out, cut) or
    that the server refused (``cause`` says which); :func:`download_encoder` turns it into
    one line naming the weights folder and what to do."""

    def __init__(self, host: str, cause: str, what: str):
        super().__init__(f"{host}: {cause}")
        self.host, self.cause, self.what = host, cause, what

    def __reduce__(self):  # ``args`` holds one string; __init__ takes three (errors.py)
        return (type(self), (self.host, self.cause, self.what))


def _network_cause(err: BaseException) -> str | None:
    """A few words for ``err`` when it is the network failing, else ``None`` (a bug, a full
    disk: those keep their traceback). Walks the chain requests -> urllib3 -> socket, or
    urllib -> socket, for the first link that says why."""
    import http.client
    import socket
    import urllib.error

    import requests

    network = (
        requests.ConnectionError,  # huggingface_hub's OfflineModeIsEnabled too
        requests.Timeout,
        ConnectionError,
        TimeoutError,
        socket.gaierror,
        http.client.HTTPException,  # a connection closed mid-body
    )
    if isinstance(err, urllib.error.HTTPError) or not (
        isinstance(err, network) or isinstance(err, urllib.error.URLError)
    ):
        return None
    cause: BaseException | None = err
    for _ in range(10):
        if cause is None:
            break
        text = str(cause)
        if type(cause).__name__ == "OfflineModeIsEnabled":
            return "HF_HUB_OFFLINE is set"
        if isinstance(cause, socket.gaierror) or "Failed to resolve" in text:
            return "its name does not resolve: no DNS, no network"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError | requests.Timeout) or "timed out" in text:
            return "timed out"
        reason = getattr(cause, "reason", None)
        cause = (
            reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
        )
    first = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {first[:200]}"


def _hub_host() -> str:
    from urllib.parse import urlparse

    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT


def resolve_hf_revision(repo: str, revision: str) -> str:
    """The commit hash that ``revision`` (branch, tag or hash) points to now."""
    from huggingface_hub import HfApi

    sha = HfApi().model_info(repo, revision=revision).sha
    if not sha:
        raise InputError(None, repo, f"the Hub did not resolve revision {revision!r} to a commit")
    return sha


def download_hf(
    repo: str,
    revision: str,
    dest: Path,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
) -> dict[str, Any]:
    """Snapshot ``repo`` at the commit ``revision`` resolves to into ``dest``."""
    from huggingface_hub import errors, snapshot_download

    what = f"{repo}@{revision}"
    try:
        commit = resolve_hf_revision(repo, revision)
        log.info("%s@%s resolves to commit %s", repo, revision, commit)
        snapshot_download(
            repo_id=repo,
            revision=commit,
            local_dir=str(dest),
            allow_patterns=allow_patterns,
            ignore_patterns=DEFAULT_IGNORE if ignore_patterns is None else ignore_patterns,
        )
    except errors.RevisionNotFoundError:
        raise InputError(None, repo, f"the Hub has no revision {revision!r} of it") from None
    except errors.RepositoryNotFoundError:  # gated ones (GatedRepoError) too
        raise InputError(
            None,
            repo,
            "the Hub has no such repository, or it is private or gated (`hf auth login`)",
        ) from None
    except errors.LocalEntryNotFoundError as err:  # snapshot_download, the connection lost
        cause = _network_cause(err.__cause__) if err.__cause__ else None
        raise _Unreachable(_hub_host(), cause or "the transfer failed", what) from err
    except Exception as err:
        cause = _network_cause(err)
        if cause is None:
            raise
        raise _Unreachable(_hub_host(), cause, what) from err
    files = sorted(
        str(p.relative_to(dest))
        for p in dest.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(dest).parts
    )
    if not files:
        raise InputError(None, repo, f"snapshot of commit {commit} holds no files")
    return {
        "repo": repo,
        "revision": revision,
        "commit": commit,
        "allow_patterns": allow_patterns,
        "ignore_patterns": ignore_patterns,
        "files": files,
        CODE_KEY: code_digests(dest),
    }


def code_digests(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of each ``*.py`` and ``config.json`` in a weights folder (relative path ->
    digest; huggingface_hub's ``.cache`` left out): the code ``trust_remote_code`` may run."""
    folder = Path(folder)
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if ".cache" in relative.parts or not path.is_file():
            continue
        if path.suffix == ".py" or path.name == "config.json":
            found[relative.as_posix()] = sha256_file(path)
    return found


def check_code(path: str | os.PathLike) -> None:
    """Before ``trust_remote_code`` runs a weights folder's Python: its ``*.py`` and
    ``config.json`` are the ones recorded at download (``isoflow_source.json``, key
    ``code_sha256``), and it holds no other ``*.py``; else one line naming the file. A
    folder without that record (downloaded before isoflow recorded it, or put there by
    hand) cannot be checked: a warning, and it loads."""
    path = Path(path)
    source = path / SOURCE_FILE
    record = _read_record(source) if source.is_file() else {}
    recorded = record.get(CODE_KEY)
    if not isinstance(recorded, dict):
        why = "downloaded before isoflow recorded" if source.is_file() else "no download record of"
        log.warning(
            "%s: %s the sha256 of its code files, so the code trust_remote_code runs from it is "
            "not checked; delete the folder and rerun rule download_encoders to have it checked",
            path,
            why,
        )
        return
    found = code_digests(path)
    for name, digest in recorded.items():
        if name not in found:
            raise InputError(source, name, "recorded code file is missing: download it again")
        if found[name] != digest:
            raise InputError(
                path / name,
                None,
                f"sha256 {found[name][:12]}... differs from the {str(digest)[:12]}... recorded "
                f"at download ({SOURCE_FILE}): trust_remote_code would run changed code; "
                f"delete {path} (rm -rf) and rerun rule download_encoders",
            )
    extra = sorted(set(found) - set(recorded))
    if extra:
        raise InputError(
            path / extra[0],
            None,
            f"not in the download record ({SOURCE_FILE}): trust_remote_code could run it; "
            f"remove it, or delete {path} (rm -rf) and rerun rule download_encoders",
        )


# config.json's auto_map key naming the class NT-v2's remote code defines for the loader
# (AutoModelForMaskedLM.from_pretrained with trust_remote_code imports it).
REMOTE_MODEL_KEY = "AutoModelForMaskedLM"


def import_remote_code(path: str | os.PathLike, shown: str | os.PathLike | None = None) -> None:
    """Import the remote code a weights folder's ``config.json`` names in ``auto_map``
    (its config class, then its ``AutoModelForMaskedLM`` class) the way
    ``AutoModelForMaskedLM.from_pretrained(trust_remote_code=True, local_files_only=True)``
    does, without reading any weights: older NT-v2 snapshots import names newer transformers
    releases removed (e.g. from ``transformers.pytorch_utils``), which would otherwise fail
    only when an embed or train job loads the model. One line naming the folder (``shown``,
    else ``path``), the failing import and the fix. A ``config.json`` that is no JSON object
    (truncated or corrupt: an interrupted copy; not UTF-8) or whose ``auto_map`` is no mapping
    of class names: one line naming it and the fix (download or copy it again). A folder
    whose ``config.json`` names no such class has no remote code to import: nothing to check.
    Run by the check once the DAG is built (``isoflow.config.check_nt_remote_code``, through
    :func:`check_remote_code`) and rule download_encoders (on the snapshot before it is
    renamed into place). The NT loader (``NucleotideTransformerEncoder.from_pretrained``)
    turns the same ImportError into the same line itself: its module's code is part of the
    NT caches' store digest (``embed.source_digest``), which a change there would make every
    stored NT cache miss."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        return
    folder = Path(shown) if shown is not None else path
    fix = (
        f"delete {folder} if it exists (rm -rf: its record is write-protected) and rerun rule "
        f"download_encoders, or copy the folder again if it was put there by hand"
    )
    shown_file = folder / "config.json"
    auto_map = _json_object(config_file, shown_file, fix).get("auto_map")
    if auto_map is None:
        return
    if not isinstance(auto_map, Mapping):
        raise InputError(
            shown_file,
            "auto_map",
            f"a JSON {_json_kind(auto_map)}, not an object naming the remote code's class of "
            f"each Auto class: a corrupt config; {fix}",
        )
    if REMOTE_MODEL_KEY not in auto_map:
        return
    for key in ("AutoConfig", REMOTE_MODEL_KEY):
        if key in auto_map and not isinstance(auto_map[key], str):
            raise InputError(
                shown_file,
                f"auto_map.{key}",
                f"a JSON {_json_kind(auto_map[key])}, not a 'module.Class' name of the remote "
                f"code: a corrupt config; {fix}",
            )
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    try:
        transformers.AutoConfig.from_pretrained(
            str(path), trust_remote_code=True, local_files_only=True
        )
        get_class_from_dynamic_module(auto_map[REMOTE_MODEL_KEY], str(path), local_files_only=True)
    except ImportError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            Path(shown) if shown is not None else path,
            "modeling code",
            f"the snapshot's remote code does not import with transformers "
            f"{transformers.__version__} ({first}); download a newer revision of the "
            f"repository: set the encoder's `revision` to a commit after the Hub's import fix, "
            f"delete this folder if it exists (rm -rf: its record is write-protected) and "
            f"rerun rule download_encoders",
        ) from err


def _json_kind(value: object) -> str:
    """What JSON calls ``value``'s type (``array``, ``string``...), for a message."""
    if isinstance(value, bool):
        return "boolean"
    kinds = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _json_object(path: Path, shown: Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``, else one line naming ``shown`` (the folder's name for the
    file) and what is wrong (not UTF-8, not JSON, not an object) with ``fix``: a truncated or
    corrupt copy (an interrupted copy of a weights folder) was a raw traceback."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(
            shown,
            None,
            f"byte 0x{err.object[err.start]:02x} at offset {err.start} is not UTF-8: "
            f"a corrupt copy; {fix}",
        ) from None
    except json.JSONDecodeError as err:
        raise InputError(
            shown,
            err.lineno,
            f"not valid JSON at column {err.colno} ({err.msg}): a truncated or corrupt copy; {fix}",
        ) from None
    if not isinstance(value, dict):
        raise InputError(
            shown, None, f"a JSON {_json_kind(value)}, not an object: a corrupt copy; {fix}"
        )
    return value


def check_remote_code(path: str | os.PathLike) -> None:
    """Before a weights folder's remote code runs: its code files are the ones recorded at
    download (:func:`check_code`), then it imports (:func:`import_remote_code`)."""
    check_code(path)
    import_remote_code(path)


def _import_downloaded_code(snapshot: Path, dest: Path) -> None:
    """:func:`import_remote_code` on a download before it is renamed into ``dest``: on a copy
    of its code files (``*.py``, ``config.json``) in a folder named as ``dest``, since
    transformers names the imported module after the folder (the snapshot's is a dotted
    temporary name, which is no module name)."""
    import shutil
    import tempfile

    code = code_digests(snapshot)
    if "config.json" not in code:
        return
    with tempfile.TemporaryDirectory(prefix="isoflow-code-") as scratch:
        copy = Path(scratch) / dest.name
        for name in code:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot / name, copy / name)
        import_remote_code(copy, shown=dest)


def _fetch_url(url: str, dest: Path) -> None:
    import urllib.error
    from urllib.parse import urlparse

    import torch.hub

    host = urlparse(url).hostname or url
    try:
        torch.hub.download_url_to_file(url, str(dest), progress=False)
    except urllib.error.HTTPError as err:  # the server answered, with an error
        raise _Unreachable(host, f"HTTP {err.code} {err.reason}", url) from err
    except Exception as err:
        cause = _network_cause(err)
        if cause is None:
            raise
        raise _Unreachable(host, cause, url) from err


def download_esm(model: str, dest: Path, url: str | None = None) -> dict[str, Any]:
    """fair-esm's checkpoint and its contact-regression file, with their sha256."""
    urls = {
        f"{model}.pt": url or ESM_MODEL_URL.format(model=model),
        f"{model}-contact-regression.pt": ESM_REGRESSION_URL.format(model=model),
    }
    dest.mkdir(parents=True, exist_ok=True)
    sha256 = {}
    for name, file_url in urls.items():
        log.info("fetching %s", file_url)
        _fetch_url(file_url, dest / name)
        sha256[name] = sha256_file(dest / name)
    return {"urls": urls, "revision": model, "sha256": sha256, "files": sorted(urls)}


def download_encoder(name: str, spec: dict, dest: str | os.PathLike) -> Path:
    """Download the pretrained weights of encoder ``name`` into ``dest`` (atomically).

    ``spec`` is the config entry, or its :func:`download_source`: ``repo`` + ``revision``
    for a Hugging Face repository, or ``esm_model`` (e.g. ``esm2_t30_150M_UR50D``, optional
    ``url``) for fair-esm. ``name`` is what the record and messages call the folder.
    """
    dest = Path(dest)
    try:
        with atomic_path(dest) as tmp:
            tmp.mkdir(parents=True)
            if spec.get("esm_model"):
                record = download_esm(spec["esm_model"], tmp, spec.get("url"))
            elif spec.get("repo"):
                record = download_hf(
                    spec["repo"],
                    str(spec.get("revision") or "main"),
                    tmp,
                    spec.get("allow_patterns"),
                    spec.get("ignore_patterns"),
                )
            else:
                raise InputError(None, name, "pretrained encoder needs `repo` (Hub) or `esm_model`")
            record = {"encoder": name, **record, "downloaded_at": _now()}
            if record.get("commit") and not _pinned(str(record.get("revision")), record["commit"]):
                log.warning(
                    "%s: revision %r is a branch or tag the Hub can move to other weights and "
                    "code; this download is commit %s: pin it (encoders.%s.revision: %s) so a "
                    "later download fetches exactly this again",
                    dest,
                    record["revision"],
                    record["commit"],
                    name,
                    record["commit"],
                )
            (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
            # remote code that cannot import fails here, not hours later in an embed job
            _import_downloaded_code(tmp, dest)
    except InputError as err:  # named by the weights folder it was for
        if err.path is not None:
            raise
        raise InputError(dest, err.record, err.message) from None
    except _Unreachable as err:
        if err.cause.startswith("HTTP "):  # reached: the server refused this URL
            raise InputError(
                dest, None, f"{err.what}: {err.cause}; check the spec's `esm_model` and `url`"
            ) from None
        raise InputError(dest, None, _offline_message(dest, err)) from None
    return dest


def _offline_message(dest: Path, err: _Unreachable) -> str:
    """What to do when the weights cannot be fetched from here (docs/encoders.md)."""
    return (
        f"cannot reach {err.host} ({err.cause}) to download {err.what}: run rule "
        f"download_encoders on a host with internet access (`snakemake --cores 1 "
        f"{dest}/{SOURCE_FILE}`) and copy {dest} here, or set the encoder's `path` to a "
        f"folder already holding weights isoflow downloaded, with their {SOURCE_FILE} "
        "(docs/encoders.md, Pretrained weights), or use `source: tiny` (small random "
        "weights, nothing downloaded: a trial run)"
    )


def _read_record(source: Path) -> dict[str, Any]:
    """A weights folder's download record (``source``: its ``isoflow_source.json``); one
    line naming it when it is no JSON object (truncated by an interrupted copy, not UTF-8)."""
    fix = (
        f"delete {source.parent} (rm -rf: the record is write-protected) and rerun rule "
        "download_encoders"
    )
    return _json_object(source, source, fix)


def read_source(path: str | os.PathLike) -> dict[str, Any]:
    """The ``isoflow_source.json`` of a model folder."""
    source = Path(path) / SOURCE_FILE
    if not source.exists():
        raise InputError(source, None, "no download record; run the download_encoders rule")
    return _read_record(source)


def verify_download(path: str | os.PathLike) -> dict[str, Any]:
    """Check every file the record lists is present (and, for .pt files, its sha256; for
    a Hub snapshot, its code files: :func:`check_code`)."""
    path = Path(path)
    record = read_source(path)
    for name in record.get("files", []):
        if not (path / name).is_file():
            raise InputError(path / SOURCE_FILE, name, "listed file is missing")
    for name, digest in (record.get("sha256") or {}).items():
        seen = sha256_file(path / name)
        if seen != digest:
            raise InputError(path / name, None, f"sha256 {seen} differs from recorded {digest}")
    if isinstance(record.get(CODE_KEY), dict):
        check_code(path)
    return record


def _describe(source: Mapping[str, Any]) -> str:
    """``repo@revision`` (Hub) or ``esm_model from url`` (fair-esm) of a download source."""
    if source.get("esm_model"):
        return f"{source['esm_model']} from {source.get('url')}"
    if source.get("repo"):
        return f"{source['repo']}@{source.get('revision')}"
    return "nothing named (no repo nor esm_model)"


def recorded_source(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a download record says was fetched, in :func:`download_source`'s keys
    (fair-esm's checkpoint URL from its ``urls``; the Hub's file patterns only in records
    written since they were recorded)."""
    if record.get("urls"):
        model = str(record.get("revision"))
        return {"esm_model": model, "url": record["urls"].get(f"{model}.pt")}
    seen = {"repo": record.get("repo"), "revision": record.get("revision")}
    for key in ("allow_patterns", "ignore_patterns"):
        if key in record:
            seen[key] = record[key]
    return seen


def check_source(path: str | os.PathLike, name: str, spec: Mapping[str, Any]) -> None:
    """The download record in weights folder ``path`` against what encoder ``name``'s spec
    asks for (:func:`download_source`): one line when the folder holds other weights (a
    changed ``repo``, ``revision``, ``esm_model``, ``url`` or file patterns; a revision
    equal to the recorded commit is the same). A folder without a record (weights put there
    by hand) and a spec naming no download are not checked."""
    source_file = Path(path) / SOURCE_FILE
    wanted = download_source(spec)
    if not source_file.is_file() or not (wanted.get("repo") or wanted.get("esm_model")):
        return
    record = _read_record(source_file)
    seen = recorded_source(record)
    if wanted.get("esm_model"):
        url = wanted.get("url") or ESM_MODEL_URL.format(model=wanted["esm_model"])
        wanted = {**wanted, "url": url}
        differs = [key for key in ESM_KEYS if wanted.get(key) != seen.get(key)]
    else:
        differs = [
            key
            for key in HUB_KEYS
            if key in seen
            and wanted.get(key) != seen[key]
            and not (key == "revision" and wanted.get(key) == record.get("commit"))
        ]
    if differs:
        raise InputError(
            source_file,
            None,
            f"downloaded {_describe(seen)}, but encoders.{name} asks for {_describe(wanted)} "
            f"({', '.join(differs)} differ): delete {Path(path)} (rm -rf: the record is "
            f"write-protected) and rerun rule download_encoders, or set encoders.{name} back "
            f"to what was downloaded",
        )
