"""HTTP(S) downloads that either land complete and verified, or not at all.

``fetch`` streams the body to a temporary file beside the destination (``atomic_path``),
hashing while it writes, and renames it into place only when

- the byte count matches ``Content-Length`` (when the server sends one), and
- the sha256 matches the configured checksum, or, with none configured, the checksum that
  ``resources/checksums.lock`` recorded for this URL at its first download.

With no configured checksum and no lock entry, the sha256 of the bytes just downloaded is
appended to the lock file (``url  sha256  bytes  date``), so every later download of the
URL is verified against what was seen the first time. Nothing else is ever written there.

Connection errors, timeouts, HTTP 5xx/429 and truncated bodies are retried with
exponential backoff; anything else (404, 403, a checksum mismatch) fails at once with one
line naming the URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import requests
import urllib3

from isoflow.errors import InputError, atomic_path

log = logging.getLogger(__name__)

LOCK_COLUMNS = ("url", "sha256", "bytes", "date")
CHUNK = 1 << 20
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class DownloadError(InputError):
    """A download that cannot succeed as configured; one line naming the URL."""

    def __init__(self, url: str, message: str):
        super().__init__(url, None, message)


class TransientError(Exception):
    """A failure worth retrying (connection, timeout, 5xx, truncated body)."""


def fetch(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_path: str | os.PathLike | None = None,
    retries: int = 3,
    timeout: float = 60,
    backoff: float = 2.0,
) -> str:
    """Download ``url`` to ``dest``, verified; return its sha256 (hex).

    ``sha256``: the configured checksum (wins over the lock file). ``lock_path``: the TSV
    of first-seen checksums; ``None`` disables it. ``retries``: extra attempts after the
    first for transient failures, waiting ``backoff * 2**attempt`` seconds in between.
    ``timeout``: seconds for connecting and between received bytes.
    """
    expected, source = _expected(url, sha256, lock_path)
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.1f s", url, last, attempt, retries, wait)
            time.sleep(wait)
        try:
            with atomic_path(dest) as tmp:
                got, size = _stream(url, tmp, timeout)
                if expected is not None and got != expected:
                    raise DownloadError(
                        url, f"sha256 mismatch: expected {expected} ({source}), got {got}"
                    )
            break
        except TransientError as err:
            last = err
    else:
        raise DownloadError(url, f"failed after {retries + 1} attempts: {last}")
    log.info("%s: %d bytes, sha256 %s -> %s", url, size, got, dest)
    if expected is None and lock_path is not None:
        try:
            _record(lock_path, url, got, size)
        except DownloadError:
            Path(dest).unlink(missing_ok=True)
            raise
    return got


def fetch_gunzipped(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_path: str | os.PathLike | None = None,
    retries: int = 3,
    timeout: float = 60,
    backoff: float = 2.0,
) -> str:
    """``fetch`` a (possibly) gzip-compressed file and write it decompressed to ``dest``.

    The checksum is that of the file as served. A body that is not gzip is kept as is.
    Returns the sha256 of the served file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        served = Path(tmp) / "download"
        got = fetch(url, served, sha256, lock_path, retries, timeout, backoff)
        with served.open("rb") as fh:
            is_gzip = fh.read(2) == b"\x1f\x8b"
        if is_gzip:
            gunzip(served, dest, name=url)
        else:
            with atomic_path(dest) as out:
                shutil.move(served, out)
    return got


def gunzip(src: str | os.PathLike, dest: str | os.PathLike, name: str | None = None) -> None:
    """Decompress gzip ``src`` to ``dest`` atomically; a corrupt or truncated file fails."""
    try:
        with gzip.open(src, "rb") as fin, atomic_path(dest) as tmp, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
    except (EOFError, OSError, zlib.error) as err:
        raise InputError(name or src, None, f"not a complete gzip file: {err}") from err


def read_lock(lock_path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The lock file as ``{url: {sha256, bytes, date}}``; empty when absent."""
    path = Path(lock_path)
    if not path.exists():
        return {}
    entries: dict[str, dict[str, str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if number == 1 and tuple(fields) == LOCK_COLUMNS:
            continue
        if len(fields) != len(LOCK_COLUMNS) or len(fields[1]) != 64:
            raise InputError(path, number, f"expected {'  '.join(LOCK_COLUMNS)} (tab-separated)")
        entries[fields[0]] = dict(zip(LOCK_COLUMNS[1:], fields[1:], strict=True))
    return entries


def _expected(url, sha256, lock_path) -> tuple[str | None, str]:
    if sha256:
        return sha256.lower(), "config"
    if lock_path is not None:
        entry = read_lock(lock_path).get(url)
        if entry:
            return entry["sha256"], f"first download, {lock_path}"
    return None, ""


def _stream(url: str, path: Path, timeout: float) -> tuple[str, int]:
    """One attempt: body -> ``path``; return (sha256, bytes). Raises TransientError."""
    digest = hashlib.sha256()
    size = 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            status = response.status_code
            if status in TRANSIENT_STATUS:
                raise TransientError(f"HTTP {status} {response.reason}")
            if status >= 400:
                raise DownloadError(url, f"HTTP {status} {response.reason}")
            length = response.headers.get("Content-Length")
            with open(path, "wb") as out:
                # Raw bytes as stored: a .gz served with Content-Encoding: gzip stays gzip.
                for chunk in response.raw.stream(CHUNK, decode_content=False):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
        message = f"{type(err).__name__}: {_first_line(err)} after {size} bytes"
        raise TransientError(message) from err
    if length is not None and size != int(length):
        raise TransientError(f"truncated body: {size} of {length} bytes")
    return digest.hexdigest(), size


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else ""


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock beside the lock file (parallel download jobs share it)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path.with_name(lock_path.name + ".flock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _record(lock_path, url: str, sha256: str, size: int) -> None:
    path = Path(lock_path)
    with _locked(path):
        entries = read_lock(path)
        if url in entries:  # a parallel job recorded it first
            if entries[url]["sha256"] != sha256:
                raise DownloadError(
                    url,
                    f"sha256 mismatch: expected {entries[url]['sha256']} "
                    f"(first download, {path}), got {sha256}",
                )
            return
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        entries[url] = {"sha256": sha256, "bytes": str(size), "date": today}
        lines = ["\t".join(LOCK_COLUMNS)]
        lines += ["\t".join([u, e["sha256"], e["bytes"], e["date"]]) for u, e in entries.items()]
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    log.info("%s: recorded sha256 %s in %s", url, sha256, path)
