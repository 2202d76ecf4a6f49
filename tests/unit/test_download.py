"""Downloads against a real HTTP server on 127.0.0.1: verified, retried, or nothing left."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import random
import re
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from helpers.paths import REPO, SNAKEMAKE
from isoflow import download
from isoflow.download import DownloadError, fetch, read_lock

BODY = b"ACGT" * 50_000 + b"\n"
BODY_SHA = hashlib.sha256(BODY).hexdigest()
FASTA = b">chr1\n" + b"ACGTN" * 12 + b"\n"
FASTA_GZ = gzip.compress(FASTA, mtime=0)
GTF = b"".join(
    b'chr1\tHAVANA\texon\t%d\t%d\t.\t+\t.\tgene_id "G%d";\n' % (i, i + 99, i)
    for i in range(1, 20_000, 7)
)
GTF_GZ = gzip.compress(GTF, mtime=0)
BGZIP = gzip.compress(FASTA[:20], mtime=0) + gzip.compress(FASTA[20:], mtime=0) + b"\0" * 28
HTML_PAGE = b"\n  <!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n"


class Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    body = BODY
    broken = False  # the faulty server of the first download, repaired later
    accept_encoding: str | None = None

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        hits = Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path == "/good.txt":
            self._send(200, Handler.body)
        elif self.path == "/flaky.txt":  # 503 twice, then the file
            self._send(503, b"busy") if hits <= 2 else self._send(200, BODY)
        elif self.path == "/truncated.txt":  # promises more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 3])
        elif self.path == "/truncated-once.txt":
            if hits == 1:
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY[:1000])
            else:
                self._send(200, BODY)
        elif self.path == "/genome.fa.gz":
            self._send(200, FASTA_GZ)
        elif self.path == "/cut.fa.gz":
            self._send(200, FASTA_GZ[: len(FASTA_GZ) // 2])
        elif self.path in ("/genome.fa", "/plain.fa.gz"):
            self._send(200, FASTA)
        elif self.path == "/annotation.gtf.gz":  # cut short without Content-Length at first
            if Handler.broken:
                self._send(200, GTF_GZ[: len(GTF_GZ) // 2], length=False)
            else:
                self._send(200, GTF_GZ, length=False)
        elif self.path == "/error-page.gtf.gz":  # a 200 HTML error page, then the file
            if Handler.broken:
                self._send(200, HTML_PAGE, kind="text/plain")
            else:
                self._send(200, GTF_GZ)
        elif self.path == "/empty.tsv":
            self._send(200, b"")
        elif self.path == "/html-typed.tsv":
            self._send(200, b"sample\ttissue\n", kind="text/html; charset=utf-8")
        elif self.path == "/corrupt.gtf.gz":
            self._send(200, GTF_GZ[:20] + b"\xff" * 40 + GTF_GZ[60:])
        elif self.path == "/bgzip.fa.gz":  # two members and zero padding, as bgzip writes
            self._send(200, BGZIP)
        elif self.path == "/loop-a":
            self._redirect("/loop-b")
        elif self.path == "/loop-b":
            self._redirect("/loop-a")
        elif self.path.startswith("/chain/"):
            self._redirect(f"/chain/{int(self.path.rsplit('/', 1)[1]) + 1}")
        elif self.path == "/to-file":
            self._redirect("file:///etc/hostname")
        elif self.path in ("/compressed.tsv", "/labelled.gtf.gz"):
            # ignores Accept-Encoding: identity, as some servers do
            Handler.accept_encoding = self.headers.get("Accept-Encoding")
            body = GTF_GZ if self.path.endswith(".gz") else gzip.compress(BODY, mtime=0)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/trickle.txt":  # 1 byte per 0.2 s: never a stall, never done
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b"A")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
        elif self.path == "/stall.txt":  # headers, a few bytes, then nothing
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"ACGT")
            self.wfile.flush()
            time.sleep(3)
        elif self.path == "/slow-good.txt":  # the whole body, in 5 pieces 0.3 s apart
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            step = len(BODY) // 5 + 1
            for start in range(0, len(BODY), step):
                self.wfile.write(BODY[start : start + step])
                self.wfile.flush()
                time.sleep(0.3)
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes, length: bool = True, kind: str | None = None):
        self.send_response(status)
        if length:
            self.send_header("Content-Length", str(len(body)))
        if kind:
            self.send_header("Content-Type", kind)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_counts():
    Handler.hits = {}
    Handler.body = BODY
    Handler.broken = False


def quick(**kwargs):
    return {"retries": 3, "timeout": 5, "backoff": 0.01, **kwargs}


def test_good_file_with_configured_checksum(server, tmp_path):
    dest = tmp_path / "out" / "good.txt"
    assert fetch(f"{server}/good.txt", dest, sha256=BODY_SHA, **quick()) == BODY_SHA
    assert dest.read_bytes() == BODY
    assert list(dest.parent.iterdir()) == [dest]


def test_without_checksum_the_first_download_is_recorded_then_enforced(server, tmp_path):
    lock = tmp_path / "resources" / "checksums.lock"
    url = f"{server}/good.txt"
    fetch(url, tmp_path / "a.txt", lock_path=lock, **quick())
    entry = read_lock(lock)[url]
    assert entry["sha256"] == BODY_SHA and entry["bytes"] == str(len(BODY))
    assert lock.read_text().splitlines()[0] == "url\tsha256\tbytes\tdate"
    # same bytes again: verified against the lock, which stays as it was
    before = lock.read_text()
    fetch(url, tmp_path / "b.txt", lock_path=lock, **quick())
    assert lock.read_text() == before
    # the server now serves other bytes: refused, nothing left, lock untouched
    Handler.body = BODY + b"changed"
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "c.txt", lock_path=lock, **quick())
    message = str(err.value)
    assert "\n" not in message
    assert url in message and BODY_SHA in message
    assert hashlib.sha256(BODY + b"changed").hexdigest() in message
    assert str(lock) in message
    assert not (tmp_path / "c.txt").exists()
    assert lock.read_text() == before


def test_configured_checksum_wins_over_the_lock(server, tmp_path):
    """A verified configured checksum is what the lock then says the URL was served as: it
    takes the place of an older line (the file changed upstream, the config pinned the new
    one), so an existing download's line is always its own (download.check_pinned)."""
    lock = tmp_path / "checksums.lock"
    url = f"{server}/good.txt"
    Handler.body = BODY + b"old"
    fetch(url, tmp_path / "a.txt", lock_path=lock, **quick())
    assert read_lock(lock)[url]["sha256"] == hashlib.sha256(BODY + b"old").hexdigest()
    Handler.body = BODY
    fetch(url, tmp_path / "b.txt", sha256=BODY_SHA, lock_path=lock, **quick())
    assert read_lock(lock)[url]["sha256"] == BODY_SHA
    assert len(lock.read_text().splitlines()) == 2  # header and the one line


def test_wrong_checksum_fails_in_one_line_and_leaves_nothing(server, tmp_path):
    wrong = "0" * 64
    dest = tmp_path / "good.txt"
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/good.txt", dest, sha256=wrong, **quick())
    message = str(err.value)
    assert message == (
        f"{server}/good.txt: sha256 mismatch: expected {wrong} (from the config, the "
        f"configured sha256), got {BODY_SHA}: if the file changed upstream on purpose, set "
        f"the configured sha256 to the new value, or delete the key to record the first "
        f"download in the lock file instead"
    )
    assert list(tmp_path.iterdir()) == []
    assert Handler.hits["/good.txt"] == 1  # a mismatch is not retried


def test_truncated_body_is_retried_then_fails_leaving_nothing(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/truncated.txt", tmp_path / "t.txt", **quick(retries=2))
    message = str(err.value)
    assert "\n" not in message and "/truncated.txt" in message and "3 attempts" in message
    assert "connection closed before the end of the body after 66,667 of 200,001 bytes" in message
    assert Handler.hits["/truncated.txt"] == 3
    assert list(tmp_path.iterdir()) == []


def test_truncated_once_then_complete(server, tmp_path):
    dest = tmp_path / "t.txt"
    assert fetch(f"{server}/truncated-once.txt", dest, sha256=BODY_SHA, **quick()) == BODY_SHA
    assert dest.read_bytes() == BODY and Handler.hits["/truncated-once.txt"] == 2


def test_transient_503_is_retried(server, tmp_path):
    dest = tmp_path / "f.txt"
    fetch(f"{server}/flaky.txt", dest, sha256=BODY_SHA, **quick())
    assert dest.read_bytes() == BODY
    assert Handler.hits["/flaky.txt"] == 3


def test_503_with_too_few_retries_fails(server, tmp_path):
    with pytest.raises(DownloadError, match=r"failed after 2 attempts: HTTP 503"):
        fetch(f"{server}/flaky.txt", tmp_path / "f.txt", **quick(retries=1))
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once_in_one_line(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/missing.txt", tmp_path / "m.txt", **quick())
    assert str(err.value) == f"{server}/missing.txt: HTTP 404 Not Found"
    assert Handler.hits["/missing.txt"] == 1
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_retried_then_fails(tmp_path):
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9/x: failed after 2 attempts") as err:
        fetch("http://127.0.0.1:9/x", tmp_path / "x", **quick(retries=1))
    assert "connection refused (no server listening at that host and port)" in str(err.value)


def test_gzip_genome_is_decompressed_and_checked_as_served(server, tmp_path):
    dest = tmp_path / "genome" / "GRCh38.fa"
    sha = hashlib.sha256(FASTA_GZ).hexdigest()
    assert fetch(f"{server}/genome.fa.gz", dest, sha256=sha, gunzip=True, **quick()) == sha
    assert dest.read_bytes() == FASTA
    assert list(dest.parent.iterdir()) == [dest]
    plain = tmp_path / "plain.fa"
    fetch(f"{server}/genome.fa", plain, gunzip=True, **quick())
    assert plain.read_bytes() == FASTA


def test_truncated_gzip_fails_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "g" / "GRCh38.fa"
    with pytest.raises(DownloadError, match=r"/cut\.fa\.gz: .*: not a complete gzip file"):
        fetch(f"{server}/cut.fa.gz", dest, gunzip=True, **quick(retries=1))
    assert Handler.hits["/cut.fa.gz"] == 2  # a truncated gzip is retried
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("path", ["/annotation.gtf.gz", "/error-page.gtf.gz"])
def test_a_bad_first_download_records_nothing_and_the_repaired_server_works(server, tmp_path, path):
    """A cut-short gzip or an HTML error page is refused before the lock records it."""
    lock = tmp_path / "resources" / "checksums.lock"
    url = f"{server}{path}"
    Handler.broken = True
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "a.gtf.gz", lock_path=lock, **quick(retries=1))
    assert "\n" not in str(err.value) and url in str(err.value)
    assert not (tmp_path / "a.gtf.gz").exists()
    assert url not in read_lock(lock)
    Handler.broken = False  # repaired
    assert fetch(url, tmp_path / "a.gtf.gz", lock_path=lock, **quick()) == (
        hashlib.sha256(GTF_GZ).hexdigest()
    )
    assert (tmp_path / "a.gtf.gz").read_bytes() == GTF_GZ
    assert read_lock(lock)[url]["sha256"] == hashlib.sha256(GTF_GZ).hexdigest()


def test_an_html_page_fails_at_once_naming_it(server, tmp_path):
    Handler.broken = True
    with pytest.raises(DownloadError, match=r"/error-page\.gtf\.gz: the server sent an HTML page"):
        fetch(f"{server}/error-page.gtf.gz", tmp_path / "a", **quick())
    assert Handler.hits["/error-page.gtf.gz"] == 1
    with pytest.raises(DownloadError, match=r"HTML page.*Content-Type text/html"):
        fetch(f"{server}/html-typed.tsv", tmp_path / "b", **quick())
    assert list(tmp_path.iterdir()) == []


def test_corrupt_gzip_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match=r"corrupt\.gtf\.gz: not a complete gzip file: corrupt"):
        fetch(f"{server}/corrupt.gtf.gz", tmp_path / "c.gtf.gz", **quick())
    assert Handler.hits["/corrupt.gtf.gz"] == 1
    assert list(tmp_path.iterdir()) == []


def test_multi_member_gzip_with_padding_is_complete(server, tmp_path):
    dest = tmp_path / "g.fa"
    fetch(f"{server}/bgzip.fa.gz", dest, gunzip=True, **quick())
    assert dest.read_bytes() == FASTA
    fetch(f"{server}/bgzip.fa.gz", tmp_path / "g.fa.gz", **quick())
    assert (tmp_path / "g.fa.gz").read_bytes() == BGZIP


def test_a_plain_file_under_a_gz_url_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match=r"not a gzip file although the URL ends \.gz"):
        fetch(f"{server}/plain.fa.gz", tmp_path / "x", gunzip=True, **quick())
    assert Handler.hits["/plain.fa.gz"] == 1 and list(tmp_path.iterdir()) == []


def test_lock_mismatch_says_where_from_and_its_reset_command_works(server, tmp_path):
    lock = tmp_path / "resources" / "checksums.lock"
    url = f"{server}/good.txt"
    other = f"{server}/genome.fa"
    fetch(other, tmp_path / "o.fa", lock_path=lock, **quick())
    fetch(url, tmp_path / "a.txt", lock_path=lock, **quick())
    Handler.body = BODY + b"new release"
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "b.txt", lock_path=lock, **quick())
    message = str(err.value)
    assert f"(from the lock, {lock}: first download of " in message
    command = download.forget_command(lock, url)
    assert f"delete its line from the lock ({command}) and rerun" in message
    subprocess.run(["bash", "-c", command], check=True)
    assert list(read_lock(lock)) == [other]
    fetch(url, tmp_path / "b.txt", lock_path=lock, **quick())
    assert read_lock(lock)[url]["sha256"] == hashlib.sha256(BODY + b"new release").hexdigest()


@pytest.mark.parametrize("name", ["it's.txt", "a b$(touch pwned).txt"])
def test_the_lock_reset_command_is_shell_quoted(server, tmp_path, name):
    """A URL with a quote or shell syntax, a lock path with a space: the command works."""
    lock = tmp_path / "my resources" / "checksums.lock"
    url, other = f"{server}/{name}", f"{server}/genome.fa"
    lock.parent.mkdir()
    lock.write_text(
        "\t".join(download.LOCK_COLUMNS) + f"\n{url}\t{'0' * 64}\t1\t2026-01-01\n"
        f"{other}\t{'1' * 64}\t1\t2026-01-01\n"
    )
    command = download.forget_command(lock, url)
    subprocess.run(["bash", "-c", command], check=True, cwd=tmp_path)
    assert list(read_lock(lock)) == [other]
    assert not (tmp_path / "pwned").exists()


def test_config_mismatch_names_the_key(server, tmp_path):
    keys = download.RULE_KEYS["download_gtex_samples"]
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/good.txt", tmp_path / "a", sha256="0" * 64, keys=keys, **quick())
    assert "(from the config, gtex.samples_sha256)" in str(err.value)
    assert "set gtex.samples_sha256 to the new value, or delete the key" in str(err.value)


def test_an_empty_body_is_retried_and_never_recorded(server, tmp_path):
    lock = tmp_path / "checksums.lock"
    with pytest.raises(DownloadError, match=r"/empty\.tsv: failed after 2 attempts: empty body"):
        fetch(f"{server}/empty.tsv", tmp_path / "e.tsv", lock_path=lock, **quick(retries=1))
    assert Handler.hits["/empty.tsv"] == 2
    assert not lock.exists() and not (tmp_path / "e.tsv").exists()


def test_redirect_loop_and_too_many_redirects_are_one_line(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/loop-a", tmp_path / "a", **quick())
    assert str(err.value) == (
        f"{server}/loop-a: redirect loop: {server}/loop-a -> {server}/loop-b -> {server}/loop-a"
    )
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/chain/0", tmp_path / "a", **quick())
    assert str(err.value).startswith(f"{server}/chain/0: too many redirects (more than 10)")
    with pytest.raises(DownloadError, match=r"/to-file: InvalidSchema: No connection adapters"):
        fetch(f"{server}/to-file", tmp_path / "a", **quick())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["/data/GRCh38.fa.gz", "data/GRCh38.fa.gz", "file:///d/x.fa.gz"])
def test_a_local_path_as_url_names_the_local_key(tmp_path, url):
    keys = download.RULE_KEYS["download_genome"]
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "g.fa", keys=keys, gunzip=True, **quick())
    assert str(err.value) == (
        f"{url}: genome.url is a local file, not an HTTP(S) URL: set genome.fasta to the path "
        f"instead (and genome.url to null)"
    )


def test_a_server_that_compresses_anyway_is_decoded_but_a_gz_file_is_kept(server, tmp_path):
    sha = fetch(f"{server}/compressed.tsv", tmp_path / "s.tsv", **quick())
    assert Handler.accept_encoding == "identity"
    assert (tmp_path / "s.tsv").read_bytes() == BODY and sha == BODY_SHA
    sha = fetch(f"{server}/labelled.gtf.gz", tmp_path / "a.gtf.gz", **quick())
    assert (tmp_path / "a.gtf.gz").read_bytes() == GTF_GZ
    assert sha == hashlib.sha256(GTF_GZ).hexdigest()


def test_a_trickle_is_stopped_by_the_deadline(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/trickle.txt", tmp_path / "t", **quick(timeout=5, deadline=1.5))
    assert time.monotonic() - start < 4
    assert "not finished within download.deadline_s = 1.5 s (" in str(err.value)
    assert " of 1,000 bytes" in str(err.value)
    assert Handler.hits["/trickle.txt"] == 1  # the deadline is not retried
    assert list(tmp_path.iterdir()) == []


def test_a_trickle_below_the_minimum_rate_is_a_stall(server, tmp_path):
    """5 bytes/s never trips the read timeout; the rate over a timeout window does."""
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/trickle.txt", tmp_path / "t", **quick(retries=1, timeout=0.6))
    assert time.monotonic() - start < 4
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{server}/trickle.txt: failed after 2")
    rate = re.search(r"too slow: (\d+) bytes/s over the last 0\.\d s, below ", message)
    assert rate and int(rate[1]) <= 10, message
    assert "download.min_bytes_per_s = 1024" in message
    assert Handler.hits["/trickle.txt"] == 2
    assert list(tmp_path.iterdir()) == []


def test_the_minimum_rate_is_the_configured_one(server, tmp_path):
    """About 130 kB/s: enough for 1 kB/s, not for 10 MB/s."""
    too_slow = "too slow: .* below download.min_bytes_per_s = 1e"
    with pytest.raises(DownloadError, match=too_slow):
        fetch(
            f"{server}/slow-good.txt", tmp_path / "s", **quick(retries=0, timeout=0.5, min_rate=1e7)
        )
    fetch(f"{server}/slow-good.txt", tmp_path / "s", **quick(timeout=0.5, min_rate=1000))
    assert (tmp_path / "s").read_bytes() == BODY


def test_a_stall_is_bounded_by_timeout_and_retried(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/stall.txt", tmp_path / "s", **quick(retries=1, timeout=0.5))
    assert time.monotonic() - start < 3
    assert "failed after 2 attempts: stalled: no data for download.timeout_s = 0.5 s" in str(
        err.value
    )
    assert Handler.hits["/stall.txt"] == 2


def test_progress_is_logged_in_bytes(server, tmp_path, caplog):
    caplog.set_level("INFO", logger="isoflow.download")
    fetch(f"{server}/slow-good.txt", tmp_path / "s", progress_every=0.2, **quick())
    total = f"{len(BODY):,}"
    lines = [r.getMessage() for r in caplog.records if f" of {total} bytes (" in r.getMessage()]
    assert len(lines) >= 3, lines
    assert lines[-1].endswith("MB/s") and f"{total} of {total} bytes (100%)" in lines[-1]


def test_dns_failure_is_one_line(monkeypatch, tmp_path):
    import socket

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DownloadError) as err:
        fetch("https://ftp.example.org/x.gz", tmp_path / "x", **quick(retries=0))
    assert str(err.value) == (
        "https://ftp.example.org/x.gz: failed after 1 attempts: cannot resolve host "
        "'ftp.example.org' (DNS; check the URL and network) after 0 bytes (total unknown), "
        "0.00 MB/s"
    )


def test_a_pinned_checksum_is_checked_against_the_existing_download(tmp_path, monkeypatch):
    """download.check_pinned (called once the DAG is built, for download jobs that will not
    run): the file's own sha256, or for a file stored decompressed the lock's line; a
    mismatch, or a decompressed file without a line, is one line naming the key."""
    monkeypatch.chdir(tmp_path)
    url = "https://example.org/gencode.gtf.gz"
    config = {"annotation": {"url": url, "sha256": None}}
    dest = tmp_path / "annotation.gtf.gz"
    check = dict(gunzip=False, lock_path=tmp_path / "checksums.lock")
    download.check_pinned(config, "download_annotation", dest, **check)  # no file, no pin
    dest.write_bytes(BODY)
    download.check_pinned(config, "download_annotation", dest, **check)  # no pin
    config["annotation"]["sha256"] = BODY_SHA.upper()
    download.check_pinned(config, "download_annotation", dest, **check)
    config["annotation"]["sha256"] = "1" * 64
    with pytest.raises(download.InputError) as err:
        download.check_pinned(config, "download_annotation", dest, **check)
    assert str(err.value) == (
        f"{dest}: annotation.sha256 is {'1' * 64}, but this download of {url} was served with "
        f"sha256 {BODY_SHA} (its own sha256): if it is the file you want, set "
        f"annotation.sha256 to that; else delete {dest} (rm -f: it is write-protected) to "
        "download it again"
    )

    genome = tmp_path / "GRCh38.fa"
    genome.write_bytes(FASTA)  # written decompressed: the lock holds the served checksum
    served = hashlib.sha256(FASTA_GZ).hexdigest()
    config = {"genome": {"url": "https://example.org/g.fa.gz", "sha256": served}}
    check = dict(gunzip=True, lock_path=tmp_path / "checksums.lock")
    with pytest.raises(download.InputError, match="has no line for https://example.org/g.fa.gz"):
        download.check_pinned(config, "download_genome", genome, **check)
    # made before the lock had lines for configured checksums, by a job whose params held
    # this pin (Snakemake's record, repr'd): its body was checked against it then
    before = [f"{{'url': 'https://example.org/g.fa.gz', 'sha256': '{served}', 'lock': 'x'}}"]
    download.check_pinned(config, "download_genome", genome, **check, recorded_params=before)
    other = [before[0].replace(served, "2" * 64)]
    with pytest.raises(download.InputError, match="has no line for https://example.org/g.fa.gz"):
        download.check_pinned(config, "download_genome", genome, **check, recorded_params=other)
    check["lock_path"].write_text(
        f"url\tsha256\tbytes\tdate\nhttps://example.org/g.fa.gz\t{served}\t9\t2026-11-27\n"
    )
    download.check_pinned(config, "download_genome", genome, **check)
    config["genome"]["sha256"] = BODY_SHA
    with pytest.raises(download.InputError, match=f"served with sha256 {served} .*2026-11-27"):
        download.check_pinned(config, "download_genome", genome, **check)


def test_bad_lock_file_names_the_line(tmp_path):
    lock = tmp_path / "checksums.lock"
    lock.write_text("url\tsha256\tbytes\tdate\nhttp://x\tabc\t1\t2026-01-01\n")
    with pytest.raises(download.InputError, match=r"checksums\.lock:2: expected"):
        read_lock(lock)


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("genome", "sha256", "abc", "['genome']['sha256']"),
        ("gtex", "tpm_sha256", "G" * 64, "['gtex']['tpm_sha256']"),
        (None, "tissue_set", "organ", "['tissue_set']"),
        ("download", "retries", -1, "['download']['retries']"),
        ("download", "deadline_s", 0, "['download']['deadline_s']"),
        ("download", "min_bytes_per_s", -1, "['download']['min_bytes_per_s']"),
    ],
)
def test_schema_rejects_bad_download_config(section, key, value, named):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(REPO / "config" / "schema.yaml"))  # the shipped config is valid
    (config.setdefault(section, {}) if section else config)[key] = value
    with pytest.raises(WorkflowError) as err:
        validate(config, str(REPO / "config" / "schema.yaml"))
    assert named in str(err.value) and repr(value) in str(err.value)


def run_workflow(workdir: Path, overlay: dict, *targets: str):
    import subprocess

    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return subprocess.run(
        [
            str(SNAKEMAKE),
            *targets,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "1",
            "--configfile",
            str(REPO / "config" / "config.yaml"),
            str(workdir / "overlay.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_download_rules_through_snakemake(server, tmp_path):
    """The rules fetch, decompress and protect; a wrong checksum fails the job, no output."""
    overlay = {
        "genome": {"url": f"{server}/genome.fa.gz"},
        "gtex": {"samples_url": f"{server}/good.txt"},
        "download": {"retries": 1, "timeout_s": 5},
    }
    done = run_workflow(
        tmp_path, overlay, "resources/genome/GRCh38.fa", "resources/gtex/sample_attributes.tsv"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    genome = tmp_path / "resources" / "genome" / "GRCh38.fa"
    assert genome.read_bytes() == FASTA
    assert not genome.stat().st_mode & 0o222  # protected()
    assert (tmp_path / "resources" / "gtex" / "sample_attributes.tsv").read_bytes() == BODY
    lock = read_lock(tmp_path / "resources" / "checksums.lock")
    assert lock[f"{server}/genome.fa.gz"]["sha256"] == hashlib.sha256(FASTA_GZ).hexdigest()
    assert lock[f"{server}/good.txt"]["sha256"] == BODY_SHA

    # tuning the retry settings does not re-run (or try to overwrite) a finished download
    overlay["download"] = {"retries": 5, "timeout_s": 30}
    again = run_workflow(tmp_path, overlay, "-n", "resources/genome/GRCh38.fa")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # pinning the checksum it was served with fetches nothing again; a wrong pin on the
    # existing (decompressed) genome stops the dry run in one line naming the key
    targets = ("resources/genome/GRCh38.fa", "resources/gtex/sample_attributes.tsv")
    overlay["genome"]["sha256"] = hashlib.sha256(FASTA_GZ).hexdigest()
    overlay["gtex"]["samples_sha256"] = BODY_SHA
    pinned = run_workflow(tmp_path, overlay, "-n", *targets)
    assert pinned.returncode == 0 and "Nothing to be done" in pinned.stdout + pinned.stderr
    overlay["genome"]["sha256"] = "2" * 64
    wrong = run_workflow(tmp_path, overlay, "-n", *targets)
    assert wrong.returncode != 0
    line = (
        f"resources/genome/GRCh38.fa: genome.sha256 is {'2' * 64}, but this download of "
        f"{server}/genome.fa.gz was served with sha256 {hashlib.sha256(FASTA_GZ).hexdigest()} "
        f"(resources/checksums.lock, download of "
    )
    assert [x for x in (wrong.stdout + wrong.stderr).splitlines() if x.startswith(line)], (
        wrong.stdout[-3000:] + wrong.stderr[-3000:]
    )
    del overlay["genome"]["sha256"], overlay["gtex"]["samples_sha256"]

    overlay["annotation"] = {"url": f"{server}/good.txt", "sha256": "1" * 64}
    failed = run_workflow(tmp_path, overlay, "resources/annotation/good.txt")
    assert failed.returncode != 0
    line = (
        f"{server}/good.txt: sha256 mismatch: expected {'1' * 64} (from the config, "
        f"annotation.sha256), got {BODY_SHA}: if the file changed upstream on purpose, set "
        f"annotation.sha256 to the new value"
    )
    assert f"isoflow: error: {line}" in failed.stderr
    annotation_dir = tmp_path / "resources" / "annotation"
    assert not annotation_dir.exists() or list(annotation_dir.iterdir()) == []


class _Pieces:
    """A file object recording each write."""

    def __init__(self):
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.pieces.append(bytes(data))


@pytest.mark.parametrize("wrap", [gzip.compress, zlib.compress], ids=["gzip", "deflate"])
def test_content_encoding_is_decoded_in_bounded_pieces(monkeypatch, wrap):
    """A Content-Encoding body was decompressed whole in one call: a 204 KB gzip body
    became 200 MiB at once. Each piece is now at most CHUNK bytes (here shrunk to 1000 so
    the boundaries are many), and the pieces are the body, byte for byte."""
    monkeypatch.setattr(download, "CHUNK", 1000)
    rng = random.Random(0)
    plain = b"A" * 250_000 + bytes(rng.randrange(256) for _ in range(20_000)) + b"C" * 99_999
    sent = wrap(plain)
    for size in (len(sent), 7, 1000):  # the body in one read, in tiny reads, in CHUNKs
        out = _Pieces()
        body = download._Body("http://h/x.tsv", out, "gzip", gunzip=False)
        for start in range(0, len(sent), size):
            body.feed(sent[start : start + size])
        body.finish()
        assert max(len(p) for p in out.pieces) <= 1000
        assert b"".join(out.pieces) == plain and body.size == len(plain)
        assert body.digest.hexdigest() == hashlib.sha256(plain).hexdigest()
