"""HTTP(S) downloads that either land complete, validated and verified, or not at all.

``fetch`` streams the body to a temporary file beside the destination (``atomic_path``),
decompressing it on the way with ``gunzip=True``,
hashing and validating while it writes, and renames it into place only when

- the body is complete: as many bytes as ``Content-Length`` says (when the server sends
  one), and, for a gzip file (a URL ending ``.gz``/``.bgz``, or gzip bytes), every member
  decompresses through to its end;
- the body is the file, not a web page: no ``Content-Type: text/html``, no leading
  ``<!DOCTYPE html``/``<html``;
- the sha256 matches the configured checksum, or, with none configured, the checksum that
  ``resources/checksums.lock`` recorded for this URL at its first download.

Only then is the sha256 written to the lock file (``url  sha256  bytes  date``): appended at
a URL's first download, or, when a configured checksum differs from the URL's line, in its
place; so the lock holds what each existing download was served as, and a truncated or HTML
download is never recorded (a later run against the repaired server succeeds).

The configured checksum is no rule param (pinning the checksum of a file already downloaded
must not fetch it again): ``check_pinned`` compares it with an existing download when
Snakemake has built its DAG (``rules/common.smk``), from the file's own digest, or, for a
file written decompressed, the lock's line.

The checksum is that of the file as stored on the server. Identity encoding is requested; a
server that still sends ``Content-Encoding: gzip`` has its layer decoded, except on a URL
ending ``.gz`` (such servers label the stored gzip file itself; its bytes are kept as is).

Failures are one line naming the URL. Connection errors, stalls (no byte for ``timeout``
seconds, or fewer than ``min_rate`` bytes/s averaged over ``timeout`` seconds), HTTP
5xx/408/429 and truncated bodies are retried with exponential backoff; HTTP
4xx, redirect loops, HTML pages, corrupt gzip and checksum mismatches fail at once; the whole
download, retries included, stops at ``deadline`` seconds. Progress (bytes received of the
total, rate) is logged every ``progress_every`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import logging
import os
import shlex
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from isoflow.errors import InputError
from isoflow.files import atomic_path

log = logging.getLogger(__name__)

LOCK_COLUMNS = ("url", "sha256", "bytes", "date")
CHUNK = 1 << 20
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
HTML_STARTS = (b"<!doctype html", b"<html")
GZIP_SUFFIXES = (".gz", ".bgz")


@dataclasses.dataclass(frozen=True)
class ConfigKeys:
    """The config keys behind one download, named in its error messages."""

    url: str
    sha256: str
    local: str


GENERIC_KEYS = ConfigKeys("the url", "the configured sha256", "the local-path key")
# download_* rule -> its config keys (rules/download.smk, config/schema.yaml)
RULE_KEYS = {
    "download_genome": ConfigKeys("genome.url", "genome.sha256", "genome.fasta"),
    "download_annotation": ConfigKeys("annotation.url", "annotation.sha256", "annotation.gtf"),
    "download_gtex_tpm": ConfigKeys("gtex.tpm_url", "gtex.tpm_sha256", "gtex.tpm"),
    "download_gtex_samples": ConfigKeys("gtex.samples_url", "gtex.samples_sha256", "gtex.samples"),
}


class DownloadError(InputError):
    """A download that cannot succeed as configured; one line naming the URL."""

    def __init__(self, url: str, message: str):
        super().__init__(url, None, message)


class TransientError(Exception):
    """A failure worth retrying (connection, stall, 5xx, truncated body)."""


def fetch(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_path: str | os.PathLike | None = None,
    retries: int = 3,
    timeout: float = 60,
    backoff: float = 2.0,
    deadline: float | None = None,
    keys: ConfigKeys | None = None,
    progress_every: float = 5.0,
    min_rate: float = 1024,
    gunzip: bool = False,
) -> str:
    """Download ``url`` to ``dest``, validated and verified; return its sha256 (hex).

    ``sha256``: the configured checksum (wins over the lock file). ``lock_path``: the TSV
    of first-seen checksums; ``None`` disables it. ``retries``: extra attempts after the
    first for transient failures, waiting ``backoff * 2**attempt`` seconds in between.
    ``timeout``: seconds for connecting and between received bytes, and the window over
    which at least ``min_rate`` bytes per second must arrive (a trickling server is a stall
    too). ``deadline``: seconds for the whole download, retries included (``None``: no
    limit). ``keys``: the config keys named in messages. ``gunzip``: write a (possibly)
    gzip-compressed file decompressed, while it streams; the checksum stays that of the
    file as served, and a body that is not gzip is kept as is, unless the URL ends ``.gz``.
    """
    keys = keys or GENERIC_KEYS
    _check_url(url, keys)
    expected, mismatch_hint = _expected(url, sha256, lock_path, keys)
    clock = _Deadline(url, deadline)
    limits = _Limits(timeout, min_rate, progress_every)
    last: Exception | None = None
    with requests.Session() as session:
        session.max_redirects = MAX_REDIRECTS
        for attempt in range(retries + 1):
            if attempt:
                wait = backoff * 2 ** (attempt - 1)
                log.warning("%s: %s; retry %d/%d in %.1f s", url, last, attempt, retries, wait)
                clock.sleep(wait, last)
            try:
                with atomic_path(dest) as tmp:
                    got, size = _stream(session, url, tmp, limits, clock, gunzip)
                    if expected is not None and got != expected:
                        raise DownloadError(
                            url, f"sha256 mismatch: expected {expected} {mismatch_hint(got)}"
                        )
                break
            except TransientError as err:
                last = err
        else:
            raise DownloadError(url, f"failed after {retries + 1} attempts: {last}")
    log.info("%s: %d bytes, sha256 %s -> %s", url, size, got, dest)
    if lock_path is not None:
        try:
            _record(lock_path, url, got, size, replace=bool(sha256))
        except DownloadError:
            Path(dest).unlink(missing_ok=True)
            raise
    return got


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


def forget_command(lock_path: str | os.PathLike, url: str) -> str:
    """The shell command that deletes ``url``'s line from the lock file (any URL, any path:
    the URL reaches awk through the environment, every word is shell-quoted)."""
    lock, new = shlex.quote(str(lock_path)), shlex.quote(f"{lock_path}.new")
    return (
        f"ISOFLOW_URL={shlex.quote(url)} awk -F'\\t' '$1 != ENVIRON[\"ISOFLOW_URL\"]' "
        f"{lock} > {new} && mv {new} {lock}"
    )


# --- one download -------------------------------------------------------------------------


def _check_url(url: str, keys: ConfigKeys) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return
    if scheme in ("", "file") or len(scheme) == 1:  # a path, file://, or C:\...
        raise DownloadError(
            url,
            f"{keys.url} is a local file, not an HTTP(S) URL: "
            f"set {keys.local} to the path instead (and {keys.url} to null)",
        )
    raise DownloadError(url, f"{keys.url}: unsupported URL scheme {scheme!r} (use http or https)")


def _expected(url, sha256, lock_path, keys: ConfigKeys):
    """(expected sha256 or None, got -> the rest of a mismatch message)."""
    if sha256:

        def from_config(got: str) -> str:
            return (
                f"(from the config, {keys.sha256}), got {got}: if the file changed upstream "
                f"on purpose, set {keys.sha256} to the new value, or delete the key to record "
                f"the first download in the lock file instead"
            )

        return sha256.lower(), from_config
    if lock_path is not None:
        entry = read_lock(lock_path).get(url)
        if entry:
            return entry["sha256"], _lock_hint(lock_path, url, entry["date"])
    return None, None


def _lock_hint(lock_path, url: str, date: str):
    def from_lock(got: str) -> str:
        return (
            f"(from the lock, {lock_path}: first download of {date}), got {got}: "
            f"if the file changed upstream on purpose, delete its line from the lock "
            f"({forget_command(lock_path, url)}) and rerun"
        )

    return from_lock


class _Deadline:
    """The overall limit of one download, retries included."""

    def __init__(self, url: str, seconds: float | None):
        self.url = url
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        if self.seconds is None:
            return float("inf")
        return self.seconds - (time.monotonic() - self.start)

    def check(self, progress: str) -> None:
        if self.left() <= 0:
            raise DownloadError(
                self.url,
                f"not finished within download.deadline_s = {self.seconds:g} s ({progress}): "
                f"raise download.deadline_s for a slow link",
            )

    def sleep(self, wait: float, last: Exception | None) -> None:
        if wait >= self.left():
            self.check(f"last attempt: {last}")
            raise DownloadError(
                self.url,
                f"no time left within download.deadline_s = {self.seconds:g} s for a retry "
                f"(last attempt: {last})",
            )
        time.sleep(wait)


@dataclasses.dataclass(frozen=True)
class _Limits:
    """Per-attempt limits: ``timeout`` s without a byte or below ``min_rate`` bytes/s."""

    timeout: float
    min_rate: float
    progress_every: float


class _Progress:
    """Logs bytes received of the total, and the rate, every ``every`` seconds; fails an
    attempt whose rate over a ``timeout``-second window is below ``min_rate`` bytes/s."""

    def __init__(self, url: str, total: int | None, every: float, limits: _Limits | None = None):
        self.url, self.total, self.every = url, total, every
        self.limits = limits
        self.start = self.last = self.window_start = time.monotonic()
        self.received = self.window_received = 0

    def __str__(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.received / elapsed / 1e6
        if self.total:
            share = 100 * self.received / self.total
            return f"{self.received:,} of {self.total:,} bytes ({share:.0f}%), {rate:.2f} MB/s"
        return f"{self.received:,} bytes (total unknown), {rate:.2f} MB/s"

    def add(self, n: int) -> None:
        self.received += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s: %s", self.url, self)
        window = now - self.window_start
        if self.limits is not None and window >= self.limits.timeout:
            rate = (self.received - self.window_received) / window
            if rate < self.limits.min_rate:
                raise TransientError(
                    f"too slow: {rate:,.0f} bytes/s over the last {window:.1f} s, below "
                    f"download.min_bytes_per_s = {self.limits.min_rate:g} (after {self}; "
                    f"lower download.min_bytes_per_s for a slow link)"
                )
            self.window_start, self.window_received = now, self.received


class _Gunzip:
    """Streaming decompression of every gzip member (bgzip files have many)."""

    def __init__(self):
        self.inflate: zlib._Decompress | None = None
        self.members = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self.inflate is None:
                if self.members:  # gzip allows zero padding after a member
                    data = data.lstrip(b"\0")
                    if not data:
                        return
                self.inflate = zlib.decompressobj(31)
            out = self.inflate.decompress(data, CHUNK)
            if out:
                yield out
            if self.inflate.eof:
                data = self.inflate.unused_data
                self.inflate = None
                self.members += 1
            else:
                data = self.inflate.unconsumed_tail

    def complete(self) -> bool:
        return self.inflate is None and self.members > 0


class _Body:
    """The served file: decoded, sniffed, hashed, gzip-checked and written."""

    def __init__(self, url: str, out, encoding: str, gunzip: bool):
        self.url, self.out, self.gunzip = url, out, gunzip
        self.must_be_gzip = urlsplit(url).path.endswith(GZIP_SUFFIXES)
        self.decode = None
        if encoding in ("gzip", "x-gzip", "deflate") and not self.must_be_gzip:
            self.decode = zlib.decompressobj(47)  # gzip or zlib header, told apart by zlib
        elif encoding not in ("", "identity", "gzip", "x-gzip"):
            raise DownloadError(
                url, f"the server sent Content-Encoding {encoding!r} although identity was asked"
            )
        self.digest = hashlib.sha256()
        self.head = b""
        self.size = 0
        self.gzip: _Gunzip | None = None

    def feed(self, chunk: bytes) -> None:
        if self.decode is None:
            self._take(chunk)
            return
        for piece in self._decoded(chunk):
            self._take(piece)

    def _decoded(self, data: bytes) -> Iterator[bytes]:
        """The Content-Encoding decoded in pieces of at most ``CHUNK`` bytes, as
        :class:`_Gunzip` does: a small compressed body may expand a thousandfold, and
        decoding it whole held it all in memory at once."""
        while True:
            try:
                out = self.decode.decompress(data, CHUNK)
            except zlib.error as err:
                raise DownloadError(self.url, f"undecodable Content-Encoding body: {err}") from err
            if out:
                yield out
            if self.decode.eof:
                return
            data = self.decode.unconsumed_tail
            if not data and len(out) < CHUNK:  # a full piece: zlib may hold more output
                return

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            return
        if len(self.head) < 1024:
            self._sniff(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.gzip is None:
            self.out.write(chunk)
            return
        try:
            for piece in self.gzip.feed(chunk):
                if self.gunzip:
                    self.out.write(piece)
        except zlib.error as err:
            raise DownloadError(
                self.url, f"not a complete gzip file: corrupt after {self.size:,} bytes: {err}"
            ) from err
        if not self.gunzip:
            self.out.write(chunk)

    def _sniff(self, chunk: bytes) -> None:
        first = not self.head
        self.head += chunk[: 1024 - len(self.head)]
        start = self.head.lstrip().lower()
        if start.startswith(b"\xef\xbb\xbf"):
            start = start[3:].lstrip()
        if start.startswith(HTML_STARTS):
            raise DownloadError(self.url, f"{_HTML}: it starts {_preview(self.head)}")
        if first:
            if chunk[:2] == b"\x1f\x8b":
                self.gzip = _Gunzip()
            elif self.must_be_gzip:
                raise DownloadError(
                    self.url,
                    f"not a gzip file although the URL ends .gz: starts {_preview(chunk)}",
                )

    def finish(self) -> None:
        if self.decode is not None and not self.decode.eof:
            raise TransientError("truncated body: the Content-Encoding stream ended early")
        if self.size == 0:
            raise TransientError("empty body")
        if self.gzip is not None and not self.gzip.complete():
            raise TransientError(
                f"not a complete gzip file: the stream ends inside a member after "
                f"{self.size:,} bytes (truncated)"
            )


_HTML = "the server sent an HTML page, not the file (check the URL in a browser)"


def _preview(data: bytes) -> str:
    return repr(data[:40].decode("latin-1"))


def _stream(session, url, path: Path, limits: _Limits, clock: _Deadline, gunzip):
    """One attempt: body -> ``path``; return (sha256, bytes). Raises TransientError."""
    timeout = limits.timeout
    progress = _Progress(url, None, limits.progress_every)
    try:
        limit = (min(timeout, max(clock.left(), 0.1)), timeout)
        headers = {"Accept-Encoding": "identity"}
        with session.get(url, stream=True, timeout=limit, headers=headers) as response:
            status = response.status_code
            if status in TRANSIENT_STATUS:
                raise TransientError(f"HTTP {status} {response.reason}")
            if status >= 400:
                raise DownloadError(url, f"HTTP {status} {response.reason}")
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind == "text/html":
                raise DownloadError(url, f"{_HTML}: Content-Type text/html")
            length = response.headers.get("Content-Length")
            progress.total = int(length) if length and length.isdigit() else None
            encoding = response.headers.get("Content-Encoding", "").strip().lower()
            with open(path, "wb") as out:
                body = _Body(url, out, encoding, gunzip)
                progress.limits, progress.window_start = limits, time.monotonic()
                while chunk := response.raw.read1(CHUNK, decode_content=False):
                    progress.add(len(chunk))
                    body.feed(chunk)
                    clock.check(str(progress))
                body.finish()
    except requests.TooManyRedirects as err:
        raise DownloadError(url, _redirects(err)) from err
    except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
        raise TransientError(f"{_network(err, timeout)} after {progress}") from err
    except requests.RequestException as err:  # invalid redirect target and the like
        raise DownloadError(url, f"{type(err).__name__}: {_first_line(err)}") from err
    if progress.total is not None and progress.received != progress.total:
        raise TransientError(f"truncated body: {progress.received:,} of {length} bytes")
    log.info("%s: %s", url, progress)
    return body.digest.hexdigest(), body.size


def _network(err: Exception, timeout: float) -> str:
    """One line for a network failure: DNS, refused, stalled, cut."""
    cause: BaseException | None = err
    for _ in range(10):  # the chain requests -> urllib3 -> socket is a few links deep
        if cause is None:
            break
        if isinstance(cause, urllib3.exceptions.NameResolutionError):
            return f"cannot resolve host {cause.conn.host!r} (DNS; check the URL and network)"
        if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(cause):
            return "connection refused (no server listening at that host and port)"
        if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
            return f"no connection within download.timeout_s = {timeout:g} s"
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            return f"stalled: no data for download.timeout_s = {timeout:g} s"
        if isinstance(cause, urllib3.exceptions.IncompleteRead | urllib3.exceptions.ProtocolError):
            return "connection closed before the end of the body"
        cause = getattr(cause, "reason", None) or cause.__cause__ or cause.__context__
    return f"{type(err).__name__}: {_first_line(err)}"


def _redirects(err: requests.TooManyRedirects) -> str:
    response = err.response
    chain = [r.url for r in (response.history if response is not None else [])]
    if response is not None:
        chain += [response.url]
        if "Location" in response.headers:
            chain.append(requests.compat.urljoin(response.url, response.headers["Location"]))
    for i, hop in enumerate(chain):
        if hop in chain[:i]:
            loop = chain[chain.index(hop) : i + 1]
            return f"redirect loop: {' -> '.join(loop)}"
    return f"too many redirects (more than {MAX_REDIRECTS}), last to {chain[-1] if chain else '?'}"


def _first_line(err: BaseException) -> str:
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


def _record(lock_path, url: str, sha256: str, size: int, replace: bool = False) -> None:
    """``url``'s line in the lock: added, or with ``replace`` (a configured checksum was
    verified) put in place of a line that differs."""
    path = Path(lock_path)
    with _locked(path):
        entries = read_lock(path)
        old = entries.get(url)
        if old is not None and old["sha256"] == sha256:
            return
        if old is not None and not replace:  # a parallel job recorded it first
            hint = _lock_hint(path, url, old["date"])
            raise DownloadError(url, f"sha256 mismatch: expected {old['sha256']} {hint(sha256)}")
        if old is not None:
            log.info("%s: the configured sha256 replaces %s in %s", url, old["sha256"], path)
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        entries[url] = {"sha256": sha256, "bytes": str(size), "date": today}
        lines = ["\t".join(LOCK_COLUMNS)]
        lines += ["\t".join([u, e["sha256"], e["bytes"], e["date"]]) for u, e in entries.items()]
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    log.info("%s: recorded sha256 %s in %s", url, sha256, path)


# --- a configured checksum against an existing download -------------------------------------


def config_value(config: dict, key: str):
    """The value at a dotted config key (``genome.sha256``), ``None`` when absent."""
    value = config
    for part in key.split("."):
        value = (value or {}).get(part)
    return value


def check_pinned(
    config: dict,
    rule: str,
    dest: str | os.PathLike,
    *,
    gunzip: bool,
    lock_path,
    recorded_params: Sequence[object] | None = None,
) -> None:
    """A configured checksum (``RULE_KEYS[rule].sha256``) against the existing download
    ``dest`` of rule ``rule``, which Snakemake will not redo: the sha256 it was served with is
    the file's own (``provenance.cached_digest``: hashed once per version of the file), or,
    for a file written decompressed (``gunzip``), the lock's line for the URL. One line
    naming the key, both checksums and the fixes when they differ, or when a decompressed
    download has no lock line (downloaded before lines were written for configured
    checksums), unless Snakemake's record of the job that made it (``recorded_params``,
    ``workflow.persistence.params``) holds the same checksum: the download rules had it as a
    param until this check, and their job verified the body against it. No configured
    checksum, or no file: nothing to check."""
    from isoflow.provenance import cached_digest

    keys = RULE_KEYS[rule]
    pinned = config_value(config, keys.sha256)
    dest = Path(dest)
    if not pinned or not dest.is_file():
        return
    url = config_value(config, keys.url)
    again = f"delete {dest} (rm -f: it is write-protected) to download it again"
    if not gunzip:
        served, where = cached_digest(dest), "its own sha256"
    else:
        entry = read_lock(lock_path).get(url)
        verified = f"'sha256': '{pinned.lower()}'"
        if entry is None and any(verified in str(p).lower() for p in recorded_params or ()):
            return  # made by a job that checked it against this pin (params of that time)
        if entry is None:
            raise InputError(
                dest,
                None,
                f"{keys.sha256} is set, but this download is stored decompressed and "
                f"{lock_path} has no line for {url}, so what it was served as is unknown: "
                f"{again}, or remove {keys.sha256}",
            )
        served, where = entry["sha256"], f"{lock_path}, download of {entry['date']}"
    if served != pinned.lower():
        raise InputError(
            dest,
            None,
            f"{keys.sha256} is {pinned.lower()}, but this download of {url} was served with "
            f"sha256 {served} ({where}): if it is the file you want, set {keys.sha256} to "
            f"that; else {again}",
        )
