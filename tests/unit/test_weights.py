"""Weight downloads against a local fake of the network: only the network calls are
replaced (Hub commit lookup, file transfer); file layout and the source record run for real."""

import hashlib
import json
import shutil
import types
from pathlib import Path

import huggingface_hub
import pytest
import torch

from helpers.encoders import save_tiny_esm2
from isoflow import weights
from isoflow.errors import InputError
from isoflow.model.encoders import build_encoder, random_encoder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A Hub repository living in a local folder; records what was asked of it."""
    remote = tmp_path / "remote"
    calls = []

    def model_info(self, repo_id, revision=None, **kwargs):
        calls.append(("model_info", repo_id, revision))
        return types.SimpleNamespace(sha=COMMIT)

    def snapshot_download(repo_id, revision=None, local_dir=None, **kwargs):
        calls.append(("snapshot_download", repo_id, revision))
        assert revision == COMMIT, "download must pin the resolved commit"
        local_dir = Path(local_dir)
        for path in remote.rglob("*"):
            if path.is_file():
                target = local_dir / path.relative_to(remote)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        # huggingface_hub keeps download metadata here; it is not part of the model.
        (local_dir / ".cache" / "huggingface").mkdir(parents=True)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return types.SimpleNamespace(remote=remote, calls=calls)


def test_hub_download_records_resolved_commit_and_loads(tmp_path, fake_hub):
    tiny = random_encoder("enformer")
    tiny.model.save_pretrained(fake_hub.remote, safe_serialization=False)
    dest = tmp_path / "models" / "enformer"
    spec = {"repo": "EleutherAI/enformer-official-rough", "revision": "main"}

    weights.download_encoder("enformer", spec, dest)

    assert fake_hub.calls == [
        ("model_info", "EleutherAI/enformer-official-rough", "main"),
        ("snapshot_download", "EleutherAI/enformer-official-rough", COMMIT),
    ]
    record = json.loads((dest / "isoflow_source.json").read_text())
    assert record["repo"] == spec["repo"]
    assert record["revision"] == "main"
    assert record["commit"] == COMMIT
    assert set(record["files"]) == {"config.json", "pytorch_model.bin"}
    assert weights.verify_download(dest) == record
    assert [p.name for p in dest.parent.iterdir()] == ["enformer"]  # no temporaries left

    loaded = build_encoder("enformer", {"source": "pretrained", "path": dest})
    tiny.eval()
    tokens = tiny.tokenize(torch.randint(0, 5, (1, 2048)).numpy().astype("uint8"))
    torch.testing.assert_close(loaded(**tokens)[0], tiny(**tokens)[0])


def test_failed_download_leaves_no_folder(tmp_path, monkeypatch):
    def model_info(self, repo_id, revision=None, **kwargs):
        return types.SimpleNamespace(sha=COMMIT)

    def snapshot_download(**kwargs):
        (Path(kwargs["local_dir"]) / "half.bin").write_bytes(b"x")
        raise OSError("connection reset")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    dest = tmp_path / "models" / "borzoi"
    with pytest.raises(OSError, match="connection reset"):
        weights.download_encoder("borzoi", {"repo": "johahi/borzoi-replicate-0"}, dest)
    assert list(dest.parent.iterdir()) == []


def test_unresolved_revision_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "model_info",
        lambda self, repo, revision=None: types.SimpleNamespace(sha=None),
    )
    with pytest.raises(InputError, match="did not resolve"):
        weights.download_encoder("borzoi", {"repo": "x/y"}, tmp_path / "borzoi")


def test_esm_download_records_sha256_of_what_arrived(tmp_path, monkeypatch):
    served = tmp_path / "served"
    tiny = save_tiny_esm2(served, name="esm2_t30_150M_UR50D")
    fetched = []

    def fetch(url, dest):  # the network transfer, served from the local folder
        fetched.append(url)
        shutil.copy(served / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(weights, "_fetch_url", fetch)
    dest = tmp_path / "models" / "esm2"
    weights.download_encoder("esm2", {"esm_model": "esm2_t30_150M_UR50D"}, dest)

    assert fetched == [
        "https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t30_150M_UR50D.pt",
        "https://dl.fbaipublicfiles.com/fair-esm/regression/"
        "esm2_t30_150M_UR50D-contact-regression.pt",
    ]
    record = json.loads((dest / "isoflow_source.json").read_text())
    for name in ("esm2_t30_150M_UR50D.pt", "esm2_t30_150M_UR50D-contact-regression.pt"):
        assert record["sha256"][name] == hashlib.sha256((served / name).read_bytes()).hexdigest()
    loaded = build_encoder("esm2", {"source": "pretrained", "path": dest})
    tiny.eval()
    tokens = tiny.tokenize(["MKTAYIAKQR"])
    torch.testing.assert_close(loaded(**tokens)[0], tiny(**tokens)[0])

    # A file changed after the download is caught.
    with open(dest / "esm2_t30_150M_UR50D-contact-regression.pt", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match="differs from recorded"):
        weights.verify_download(dest)


def test_spec_without_source_fails(tmp_path):
    with pytest.raises(InputError, match="needs `repo`"):
        weights.download_encoder("enformer", {}, tmp_path / "enformer")


def test_read_source_of_folder_without_record(tmp_path):
    with pytest.raises(InputError, match="download_encoders"):
        weights.read_source(tmp_path)


def test_default_ignore_skips_weights_no_loader_reads():
    """snapshot_download filters with these patterns (huggingface_hub's own filter): the
    PyTorch weights, config and tokenizer files stay; NT-v2's jax_model/ and other
    frameworks' weights are not downloaded."""
    from huggingface_hub.utils import filter_repo_objects

    from isoflow.weights import DEFAULT_IGNORE

    files = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "vocab.txt",
        "tokenizer_config.json",
        "esm_config.py",
        "modeling_esm.py",
        "jax_model/params.joblib",
        "jax_model/hyperparams.json",
        "tf_model.h5",
        "flax_model.msgpack",
    ]
    kept = list(filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE))
    assert kept == files[:7]


def test_download_source_is_what_the_downloader_reads():
    spec = {"source": "pretrained", "repo": "a/b", "pool_to": 8, "finetune_last": 2}
    assert weights.download_source(spec) == {"repo": "a/b", "revision": "main"}
    spec = {"repo": "a/b", "revision": "v2", "allow_patterns": ["*.bin"], "path": "x"}
    assert weights.download_source(spec) == {
        "repo": "a/b",
        "revision": "v2",
        "allow_patterns": ["*.bin"],
    }
    esm = {"esm_model": "esm2_t6_8M_UR50D", "revision": "main", "max_len": 9}
    assert weights.download_source(esm) == {"esm_model": "esm2_t6_8M_UR50D"}
    assert weights.download_source({"source": "tiny"}) == {}


def test_loading_weights_of_another_download_fails_in_one_line(tmp_path, fake_hub):
    """The folder's record against the spec (isoflow.weights.check_source, in
    build_encoder): a spec naming another repo or revision than the folder holds is one line
    naming both and the fix; the recorded revision or its commit is the same download."""
    random_encoder("enformer").model.save_pretrained(fake_hub.remote, safe_serialization=False)
    dest = tmp_path / "models" / "enformer"
    weights.download_encoder("enformer", {"repo": "a/enformer", "revision": "main"}, dest)
    for same in ({"repo": "a/enformer"}, {"repo": "a/enformer", "revision": COMMIT}, {}):
        build_encoder("enformer", {"source": "pretrained", "path": dest, **same})
    for other, differs in (
        ({"repo": "a/other"}, "repo"),
        ({"repo": "a/enformer", "revision": "v2"}, "revision"),
        ({"repo": "a/enformer", "allow_patterns": ["*.bin"]}, "allow_patterns"),
    ):
        with pytest.raises(InputError) as err:
            build_encoder("enformer", {"source": "pretrained", "path": dest, **other})
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{dest / 'isoflow_source.json'}: ")
        wanted = f"{other['repo']}@{other.get('revision', 'main')}"
        assert f"downloaded a/enformer@main, but encoders.enformer asks for {wanted}" in line
        assert f"({differs} differ): delete {dest} (rm -rf" in line
        assert "rerun rule download_encoders" in line


def test_an_esm_folder_of_another_model_or_url_fails(tmp_path, monkeypatch):
    served = tmp_path / "served"
    save_tiny_esm2(served, name="esm2_t30_150M_UR50D")
    monkeypatch.setattr(
        weights, "_fetch_url", lambda url, dest: shutil.copy(served / url.rsplit("/", 1)[1], dest)
    )
    dest = tmp_path / "models" / "esm2"
    weights.download_encoder("esm2", {"esm_model": "esm2_t30_150M_UR50D"}, dest)
    spec = {"source": "pretrained", "path": dest, "esm_model": "esm2_t30_150M_UR50D"}
    build_encoder("esm2", spec)
    build_encoder("esm2", {**spec, "url": weights.ESM_MODEL_URL.format(model=spec["esm_model"])})
    with pytest.raises(InputError, match=r"asks for esm2_t33_650M_UR50D from .*esm_model, url"):
        build_encoder("esm2", {**spec, "esm_model": "esm2_t33_650M_UR50D"})
    with pytest.raises(InputError, match=r"\(url differ\)"):
        build_encoder("esm2", {**spec, "url": "https://example.org/esm2.pt"})


# ---- a host without internet access: one line saying what to do, not pages of traceback ----

OFFLINE_FIX = (
    ": run rule download_encoders on a host with internet access (`snakemake --cores 1 "
    "{dest}/isoflow_source.json`) and copy {dest} here, or set the encoder's `path` to a "
    "folder already holding weights isoflow downloaded, with their isoflow_source.json "
    "(docs/encoders.md, Pretrained weights), or use `source: tiny` (small random weights, "
    "nothing downloaded: a trial run)"
)


def _dns_failure(host):
    """What requests raises when ``host`` does not resolve (as on the reviewer's host)."""
    import socket

    import requests
    import urllib3

    gaierror = socket.gaierror(-2, "Name or service not known")
    try:
        raise urllib3.exceptions.MaxRetryError(
            None, "/api/models", urllib3.exceptions.NameResolutionError(host, None, gaierror)
        )
    except urllib3.exceptions.MaxRetryError as err:
        try:
            raise requests.ConnectionError(err)
        except requests.ConnectionError as outer:
            return outer


def test_esm_download_offline_is_one_line(tmp_path, monkeypatch):
    # Before: urllib.error.URLError and a page of traceback from torch.hub.
    import socket
    import urllib.error

    import torch.hub

    def offline(url, dst, progress=True):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    dest = tmp_path / "models" / "esm2"
    with pytest.raises(InputError) as err:
        weights.download_encoder("esm2", {"esm_model": "esm2_t30_150M_UR50D"}, dest)
    assert str(err.value) == (
        f"{dest}: cannot reach dl.fbaipublicfiles.com (its name does not resolve: no DNS, no "
        "network) to download https://dl.fbaipublicfiles.com/fair-esm/models/"
        "esm2_t30_150M_UR50D.pt" + OFFLINE_FIX.format(dest=dest)
    )
    assert list(dest.parent.iterdir()) == []


def _hub_raising(monkeypatch, model_info=None, snapshot=None):
    def info(self, repo_id, revision=None, **kwargs):
        if model_info is not None:
            raise model_info
        return types.SimpleNamespace(sha=COMMIT)

    def snapshot_download(**kwargs):
        raise snapshot

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


def test_hub_download_offline_is_one_line(tmp_path, monkeypatch):
    # Before: requests.exceptions.ConnectionError and a page of traceback.
    _hub_raising(monkeypatch, model_info=_dns_failure("huggingface.co"))
    dest = tmp_path / "models" / "enformer"
    with pytest.raises(InputError) as err:
        weights.download_encoder("enformer", {"repo": "EleutherAI/enformer-official-rough"}, dest)
    assert str(err.value) == (
        f"{dest}: cannot reach huggingface.co (its name does not resolve: no DNS, no network) "
        "to download EleutherAI/enformer-official-rough@main" + OFFLINE_FIX.format(dest=dest)
    )
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("where", "raised", "cause"),
    [
        ("model_info", "timeout", "timed out"),
        ("model_info", "offline_mode", "HF_HUB_OFFLINE is set"),
        ("model_info", "refused", "connection refused"),
        ("snapshot", "lost", "its name does not resolve: no DNS, no network"),
    ],
)
def test_hub_network_failures_name_their_cause(tmp_path, monkeypatch, where, raised, cause):
    import requests
    from huggingface_hub import errors

    if raised == "lost":  # snapshot_download's wrapper of a failed transfer
        error = errors.LocalEntryNotFoundError("cannot find the requested files")
        error.__cause__ = _dns_failure("huggingface.co")
    else:
        error = {
            "timeout": requests.ConnectTimeout("connect timeout=10"),
            "offline_mode": errors.OfflineModeIsEnabled("offline"),
            "refused": requests.ConnectionError(ConnectionRefusedError(111, "refused")),
        }[raised]
        error.__context__ = error.args[0] if isinstance(error.args[0], BaseException) else None
    _hub_raising(monkeypatch, **{"model_info" if where == "model_info" else "snapshot": error})
    dest = tmp_path / "models" / "borzoi"
    with pytest.raises(InputError, match=rf"^{dest}: cannot reach huggingface.co \({cause}\) "):
        weights.download_encoder("borzoi", {"repo": "johahi/borzoi-replicate-0"}, dest)


def test_hub_and_server_refusals_are_one_line(tmp_path, monkeypatch):
    import urllib.error

    import torch.hub
    from huggingface_hub import errors

    _hub_raising(monkeypatch, model_info=errors.RepositoryNotFoundError("404"))
    with pytest.raises(InputError) as err:
        weights.download_encoder("x", {"repo": "a/b"}, tmp_path / "x")
    assert str(err.value) == (
        f"{tmp_path / 'x'}:a/b: the Hub has no such repository, or it is private or gated "
        "(`hf auth login`)"
    )
    _hub_raising(monkeypatch, model_info=errors.RevisionNotFoundError("404"))
    with pytest.raises(InputError, match=r":a/b: the Hub has no revision 'v9' of it$"):
        weights.download_encoder("x", {"repo": "a/b", "revision": "v9"}, tmp_path / "x")

    def not_found(url, dst, progress=True):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    monkeypatch.setattr(torch.hub, "download_url_to_file", not_found)
    dest = tmp_path / "esm2"
    with pytest.raises(InputError) as err:
        weights.download_encoder("esm2", {"esm_model": "esm2_t99"}, dest)
    assert str(err.value) == (
        f"{dest}: https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t99.pt: HTTP 404 Not "
        "Found; check the spec's `esm_model` and `url`"
    )


def test_a_failure_that_is_not_the_network_keeps_its_traceback(tmp_path, monkeypatch):
    import torch.hub

    def disk_full(url, dst, progress=True):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.hub, "download_url_to_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        weights.download_encoder("esm2", {"esm_model": "esm2_t6_8M_UR50D"}, tmp_path / "esm2")


# ---- trust_remote_code: NT-v2 runs the Python of its weights folder. The download records
# the sha256 of the snapshot's code files; loading runs only those.


def _nt_download(tmp_path, fake_hub, revision="main"):
    from helpers.encoders import save_tiny_nt_snapshot

    save_tiny_nt_snapshot(fake_hub.remote)
    dest = tmp_path / "models" / "nucleotide_transformer"
    spec = {"repo": "InstaDeepAI/nt", "revision": revision}
    weights.download_encoder("nucleotide_transformer", spec, dest)
    return dest


def _load_nt(dest):
    return build_encoder("nucleotide_transformer", {"source": "pretrained", "path": dest})


def _editable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_nt_download_records_its_code_and_loading_refuses_other_code(tmp_path, fake_hub):
    dest = _nt_download(tmp_path, fake_hub)
    record = json.loads((dest / weights.SOURCE_FILE).read_text())
    code = record[weights.CODE_KEY]
    assert set(code) == {"config.json", "modeling_esm.py", "esm_config.py"}
    for name, digest in code.items():
        assert digest == hashlib.sha256((fake_hub.remote / name).read_bytes()).hexdigest()
    _load_nt(dest)  # as downloaded: loads

    modeling = _editable(dest / "modeling_esm.py")
    original = modeling.read_text()
    modeling.write_text(original + "\nimport os  # changed after the download\n")
    with pytest.raises(InputError) as caught:
        _load_nt(dest)
    line = str(caught.value)
    assert "\n" not in line and str(modeling) in line and "recorded at download" in line
    with pytest.raises(InputError, match="recorded at download"):
        weights.verify_download(dest)
    modeling.write_text(original)

    extra = dest / "sub" / "helper.py"
    extra.parent.mkdir()
    extra.write_text("raise SystemExit('ran')\n")
    with pytest.raises(InputError, match="not in the download record") as caught:
        _load_nt(dest)
    assert str(extra) in str(caught.value)
    extra.unlink()

    config = _editable(dest / "config.json")
    config.write_text(config.read_text().replace("modeling_esm.", "modeling_esm2."))
    with pytest.raises(InputError, match="config.json: sha256"):
        _load_nt(dest)


def test_a_folder_without_code_digests_loads_with_a_warning(tmp_path, fake_hub, caplog):
    """Downloaded before the record held code digests (or put there by hand): not checkable,
    so it loads, and says so."""
    dest = _nt_download(tmp_path, fake_hub)
    source = _editable(dest / weights.SOURCE_FILE)
    record = json.loads(source.read_text())
    del record[weights.CODE_KEY]
    source.write_text(json.dumps(record))
    with caplog.at_level("WARNING", logger="isoflow.weights"):
        _load_nt(dest)
    assert "downloaded before isoflow recorded the sha256 of its code files" in caplog.text


def test_a_branch_revision_is_a_warning_naming_the_commit_to_pin(tmp_path, fake_hub, caplog):
    with caplog.at_level("WARNING", logger="isoflow.weights"):
        _nt_download(tmp_path, fake_hub, revision="main")
    assert f"pin it (encoders.nucleotide_transformer.revision: {COMMIT})" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="isoflow.weights"):
        _nt_download(tmp_path / "pinned", fake_hub, revision=COMMIT)
    assert "pin it" not in caplog.text
    # an abbreviated hash pins it too (it warned, comparing the strings whole)
    assert weights._pinned(COMMIT[:10].upper(), COMMIT)
    assert not weights._pinned("main", COMMIT) and not weights._pinned(COMMIT[:6], COMMIT)


def test_pinned_is_a_prefix_of_the_commit_and_code_digests_leave_the_hub_cache_out(tmp_path):
    """An abbreviated hash pins only as the commit's prefix (``git``'s abbreviation): 7+ hex
    digits from its middle, or a hex-looking branch name, are no pin. The code recorded
    (and checked) is the snapshot's, not huggingface_hub's ``.cache`` bookkeeping."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert weights._pinned(commit, commit) and weights._pinned(commit[:7], commit)
    assert not weights._pinned(commit[3:12], commit)  # inside it, not its start
    assert not weights._pinned("abcdef0", commit) and not weights._pinned(commit + "0", commit)

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "modeling.py").write_text("x = 1\n")
    cache = tmp_path / ".cache" / "huggingface" / "download"
    cache.mkdir(parents=True)
    (cache / "modeling.py").write_text("bookkeeping\n")
    assert set(weights.code_digests(tmp_path)) == {"config.json", "modeling.py"}


def test_nt_remote_code_that_cannot_import_fails_the_download_not_an_embed_job(tmp_path, fake_hub):
    """A snapshot whose modeling code imports a name this transformers release removed (NT-v2
    commits older than the Hub's import fix): rule download_encoders fails in one line naming
    the weights folder and the fix, and leaves no folder, before any embed job could load it."""
    from helpers.encoders import NT_STALE_MODELING_FILE, save_tiny_nt_snapshot

    save_tiny_nt_snapshot(fake_hub.remote, modeling=NT_STALE_MODELING_FILE)
    dest = tmp_path / "models" / "nucleotide_transformer"
    spec = {"repo": "InstaDeepAI/nt", "revision": COMMIT}
    with pytest.raises(InputError) as caught:
        weights.download_encoder("nucleotide_transformer", spec, dest)
    line = str(caught.value)
    assert line.startswith(
        f"{dest}:modeling code: the snapshot's remote code does not import with transformers "
    ), line
    assert "a_name_removed_long_ago" in line and "newer revision" in line and "\n" not in line
    assert "rerun rule download_encoders" in line
    assert list(dest.parent.iterdir()) == []  # nothing renamed into place, no temporary left


def test_remote_code_is_checked_by_one_function_at_download_parse_and_load(tmp_path, fake_hub):
    """A good snapshot passes the check (and loads); the same snapshot with stale modeling
    code recorded as downloaded fails check_remote_code (parse) and the loader (its own
    except, kept so the NT module's store digest stays) with the same line."""
    from helpers.encoders import NT_STALE_MODELING_FILE, record_nt_download

    dest = _nt_download(tmp_path, fake_hub)
    weights.check_remote_code(dest)
    _load_nt(dest)
    modeling = _editable(dest / "modeling_esm.py")
    modeling.write_text(NT_STALE_MODELING_FILE)
    _editable(dest / weights.SOURCE_FILE)
    record_nt_download(dest, "InstaDeepAI/nt")  # as if downloaded when it still imported
    for check in (weights.check_remote_code, _load_nt):
        with pytest.raises(InputError) as caught:
            check(dest)
        line = str(caught.value)
        assert line.startswith(f"{dest}:modeling code: the snapshot's remote code does not")
        assert "a_name_removed_long_ago" in line and "\n" not in line
    # a folder whose config.json names no remote class has nothing to import
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text('{"model_type": "esm"}')
    weights.import_remote_code(plain)


# A Nucleotide Transformer v2 snapshot's config.json as an interrupted copy or a corrupt file
# leaves it: (its bytes, the start of the one line naming it).
BROKEN_CONFIGS = {
    "truncated": (b'{"auto_map": {"AutoModelForMaskedLM": "modeling_esm.Es', ":1: not valid JSON"),
    "not_utf8": (b'{"model_type": "esm\xff"}', ": byte 0xff at offset 19 is not UTF-8"),
    "not_an_object": (b'["auto_map"]', ": a JSON array, not an object"),
    "auto_map_not_a_mapping": (
        b'{"model_type": "esm", "auto_map": ["AutoModelForMaskedLM"]}',
        ":auto_map: a JSON array, not an object",
    ),
    "auto_map_entry_not_a_name": (
        b'{"model_type": "esm", "auto_map": {"AutoModelForMaskedLM": ["modeling_esm.Esm"]}}',
        ":auto_map.AutoModelForMaskedLM: a JSON array, not a 'module.Class' name",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS))
def test_a_broken_config_json_is_one_line_naming_it_and_the_fix(tmp_path, case):
    """import_remote_code (the DAG's check, through check_remote_code, on a folder whose record
    predates code_sha256 or that has none) on a config.json that is not a JSON object or whose
    auto_map is not a mapping of class names: one line naming the file and the fix, not a raw
    JSONDecodeError, UnicodeDecodeError, AttributeError or TypeError."""
    data, where = BROKEN_CONFIGS[case]
    folder = tmp_path / "nucleotide_transformer"
    folder.mkdir()
    (folder / "config.json").write_bytes(data)
    with pytest.raises(InputError) as caught:
        weights.import_remote_code(folder)
    line = str(caught.value)
    assert line.startswith(f"{folder / 'config.json'}{where}"), line
    assert "rerun rule download_encoders" in line and "\n" not in line


def test_a_downloaded_broken_config_json_fails_the_download_naming_the_folder(tmp_path, fake_hub):
    """A snapshot whose config.json arrives truncated: rule download_encoders fails in one line
    naming the weights folder's config.json (not the scratch copy it imported from), and
    leaves no folder."""
    from helpers.encoders import save_tiny_nt_snapshot

    save_tiny_nt_snapshot(fake_hub.remote)
    config = fake_hub.remote / "config.json"
    config.write_bytes(config.read_bytes()[:40])
    dest = tmp_path / "models" / "nucleotide_transformer"
    spec = {"repo": "InstaDeepAI/nt", "revision": COMMIT}
    with pytest.raises(InputError) as caught:
        weights.download_encoder("nucleotide_transformer", spec, dest)
    line = str(caught.value)
    assert line.startswith(f"{dest / 'config.json'}:1: not valid JSON"), line
    assert "rerun rule download_encoders" in line and "\n" not in line
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("case", ["truncated", "not_utf8", "not_an_object"])
@pytest.mark.parametrize("reader", ["check_code", "read_source", "check_source"])
def test_a_broken_download_record_is_one_line_naming_it_and_the_fix(tmp_path, reader, case):
    """The weights folder's isoflow_source.json as an interrupted copy leaves it, read by the
    DAG's NT check (check_source, then check_code), the loader (check_source, check_code) and
    the bundle (read_source): one line naming the record and the fix, not a raw traceback."""
    data, where = {
        "truncated": (b'{"repo": "InstaDeepAI/nt", "revis', ":1: not valid JSON"),
        "not_utf8": (b'{"repo": "InstaDeepAI/nt\xff"}', ": byte 0xff at offset 24 is not UTF-8"),
        "not_an_object": (b'"InstaDeepAI/nt"', ": a JSON string, not an object"),
    }[case]
    folder = tmp_path / "nucleotide_transformer"
    folder.mkdir()
    (folder / weights.SOURCE_FILE).write_bytes(data)
    spec = {"repo": "InstaDeepAI/nt", "revision": COMMIT}
    call = {
        "check_code": lambda: weights.check_code(folder),
        "read_source": lambda: weights.read_source(folder),
        "check_source": lambda: weights.check_source(folder, "nucleotide_transformer", spec),
    }[reader]
    with pytest.raises(InputError) as caught:
        call()
    line = str(caught.value)
    assert line.startswith(f"{folder / weights.SOURCE_FILE}{where}"), line
    assert f"delete {folder} (rm -rf" in line and "rerun rule download_encoders" in line
    assert "\n" not in line
