"""Downloads against a real HTTP server on 127.0.0.1: verified, retried, or nothing left."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from isoflow import download
from isoflow.download import DownloadError, fetch, fetch_gunzipped, read_lock

ROOT = Path(__file__).resolve().parents[1]
BODY = b"ACGT" * 50_000 + b"\n"
BODY_SHA = hashlib.sha256(BODY).hexdigest()
FASTA = b">chr1\n" + b"ACGTN" * 12 + b"\n"
FASTA_GZ = gzip.compress(FASTA, mtime=0)


class Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    body = BODY

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
        elif self.path == "/genome.fa":
            self._send(200, FASTA)
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
    lock = tmp_path / "checksums.lock"
    url = f"{server}/good.txt"
    fetch(url, tmp_path / "a.txt", sha256=BODY_SHA, lock_path=lock, **quick())
    assert not lock.exists()  # a configured checksum is not copied into the lock


def test_wrong_checksum_fails_in_one_line_and_leaves_nothing(server, tmp_path):
    wrong = "0" * 64
    dest = tmp_path / "good.txt"
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/good.txt", dest, sha256=wrong, **quick())
    message = str(err.value)
    assert message == (
        f"{server}/good.txt: sha256 mismatch: expected {wrong} (config), got {BODY_SHA}"
    )
    assert list(tmp_path.iterdir()) == []
    assert Handler.hits["/good.txt"] == 1  # a mismatch is not retried


def test_truncated_body_is_retried_then_fails_leaving_nothing(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/truncated.txt", tmp_path / "t.txt", **quick(retries=2))
    message = str(err.value)
    assert "\n" not in message and "/truncated.txt" in message and "3 attempts" in message
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
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9/x: failed after 2 attempts"):
        fetch("http://127.0.0.1:9/x", tmp_path / "x", **quick(retries=1))


def test_gzip_genome_is_decompressed_and_checked_as_served(server, tmp_path):
    dest = tmp_path / "genome" / "GRCh38.fa"
    sha = hashlib.sha256(FASTA_GZ).hexdigest()
    assert fetch_gunzipped(f"{server}/genome.fa.gz", dest, sha256=sha, **quick()) == sha
    assert dest.read_bytes() == FASTA
    assert list(dest.parent.iterdir()) == [dest]
    plain = tmp_path / "plain.fa"
    fetch_gunzipped(f"{server}/genome.fa", plain, **quick())
    assert plain.read_bytes() == FASTA


def test_truncated_gzip_fails_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "g" / "GRCh38.fa"
    with pytest.raises(download.InputError, match=r"/cut\.fa\.gz: not a complete gzip file"):
        fetch_gunzipped(f"{server}/cut.fa.gz", dest, **quick())
    assert list(dest.parent.iterdir()) == []


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
    ],
)
def test_schema_rejects_bad_download_config(section, key, value, named):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate(config, str(ROOT / "config" / "schema.yaml"))  # the shipped config is valid
    (config.setdefault(section, {}) if section else config)[key] = value
    with pytest.raises(WorkflowError) as err:
        validate(config, str(ROOT / "config" / "schema.yaml"))
    assert named in str(err.value) and repr(value) in str(err.value)


def run_workflow(workdir: Path, overlay: dict, *targets: str):
    import subprocess
    import sys

    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    snakemake = Path(sys.executable).parent / "snakemake"
    return subprocess.run(
        [
            str(snakemake),
            *targets,
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "1",
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
            str(workdir / "overlay.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


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

    overlay["annotation"] = {"url": f"{server}/good.txt", "sha256": "1" * 64}
    failed = run_workflow(tmp_path, overlay, "resources/annotation/good.txt")
    assert failed.returncode != 0
    line = f"{server}/good.txt: sha256 mismatch: expected {'1' * 64} (config), got {BODY_SHA}"
    assert f"isoflow: error: {line}" in failed.stderr
    annotation_dir = tmp_path / "resources" / "annotation"
    assert not annotation_dir.exists() or list(annotation_dir.iterdir()) == []
