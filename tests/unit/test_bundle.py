"""Model bundles: export, load anywhere, predict as the run did; one-line errors."""

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.bundles import EXPERIMENT, tiny_bundles
from helpers.paths import REPO
from helpers.training import TINY_CONFIG
from isoflow.bundle import (
    DIGESTS,
    FORMAT,
    MANIFEST,
    WEIGHTS,
    ModelInput,
    dataset_inputs,
    export_bundle,
    load_model,
    manifest_digest,
)
from isoflow.checkpoints import checkpoint_dir, fingerprint_hash, run_fingerprint
from isoflow.dataset import read_dataset
from isoflow.errors import InputError

# The bundle: helpers.bundles (DNA read raw, its tiny Enformer trained inside the network;
# RNA and protein through embedding caches of frozen tiny encoders: both ways a modality is fed).
# |bundle - predictions.parquet| measured 0 here (same batches as the test loader, CPU);
# the bound is the export check's float32 one.
TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    built = tiny_bundles(tmp, max_epochs=2, check_n=1000)
    run_dir, dataset, fasta = built["run_dirs"][0], built["dataset"], built["fasta"]
    kwargs, manifest = built["exports"][0], built["manifests"][0]
    return {
        "tmp": tmp,
        "run_dir": run_dir,
        "bundle": tmp / "models" / "r",
        "dataset": dataset,
        "fasta": fasta,
        "manifest": manifest,
        "kwargs": kwargs,
    }


def _test_inputs(trained):
    frame, tissues = read_dataset(trained["dataset"])
    test = frame[frame["split"] == "test"]
    return test, tissues, dataset_inputs(test, trained["fasta"])


def _run_predictions(run_dir, ids, tissues):
    table = pd.read_parquet(run_dir / "predictions.parquet")
    wide = table.pivot(index="transcript_id", columns="tissue", values="predicted")
    return wide.loc[list(ids), tissues].to_numpy()


@pytest.mark.slow
def test_copied_bundle_reproduces_the_runs_predictions_in_a_fresh_process(trained, tmp_path):
    """Copied away from the run, its caches and the training config, and loaded in a new
    process, the bundle predicts the run's test transcripts from their sequences as the run
    did (predictions.parquet), within TOLERANCE."""
    manifest = trained["manifest"]
    assert manifest["format"] == FORMAT
    assert manifest["check"]["n"] == manifest["metrics"]["n_test"]
    assert manifest["check"]["max_abs_diff"] <= TOLERANCE
    assert {e["mode"] for e in manifest["encoders"].values()} == {"raw", "cached"}
    copied = shutil.copytree(trained["bundle"], tmp_path / "elsewhere")
    test, tissues, inputs = _test_inputs(trained)
    np.save(tmp_path / "ids.npy", np.array(test["transcript_id"]))
    records = [(i.id, i.dna, i.rna, i.protein) for i in inputs]
    (tmp_path / "inputs.json").write_text(json.dumps(records))
    script = f"""
import json, numpy as np, isoflow
from isoflow.bundle import ModelInput
model = isoflow.load_model({str(copied)!r}, device="cpu")
inputs = [ModelInput(*r) for r in json.load(open({str(tmp_path / "inputs.json")!r}))]
np.save({str(tmp_path / "predicted.npy")!r}, model.predict(inputs, batch_size=5))
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=_env())
    predicted = np.load(tmp_path / "predicted.npy")
    expected = _run_predictions(trained["run_dir"], test["transcript_id"], tissues)
    assert predicted.shape == (len(test), len(tissues))
    assert np.abs(predicted - expected).max() <= TOLERANCE


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_embed_then_head_lets_one_modality_change(trained):
    """predict = head(embed(.)); a caller re-embeds only the modality it changed (ISM) and
    gets what predicting the changed inputs whole gives."""
    model = load_model(trained["bundle"], device="cpu")
    _, _, inputs = _test_inputs(trained)
    inputs = inputs[:6]
    whole = model.predict(inputs)
    assert np.array_equal(model.head(model.embed(inputs)), whole)
    base = inputs[0]
    mutants = [
        ModelInput(base.id, base.dna[:i] + "A" + base.dna[i + 1 :], base.rna, base.protein)
        for i in (0, 255, 256, 511)
    ]
    fixed = model.embed([base], ["rna", "protein"])
    changed = model.embed(mutants, ["dna"])
    reused = {m: fixed[m] * len(mutants) for m in fixed} | changed
    np.testing.assert_allclose(model.head(reused), model.predict(mutants), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_bundle_errors_are_one_line(trained, tmp_path):
    def error(bundle):
        with pytest.raises(InputError) as caught:
            load_model(bundle, device="cpu")
        text = str(caught.value)
        assert "\n" not in text and str(bundle) in text
        return text

    bundle = shutil.copytree(trained["bundle"], tmp_path / "b")
    manifest = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**manifest, "format": FORMAT + 1}))
    assert "format" in error(bundle) and "export_model" in error(bundle)
    (bundle / MANIFEST).write_text(
        json.dumps({k: v for k, v in manifest.items() if k != "tissues"})
    )
    assert "tissues" in error(bundle)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    (bundle / WEIGHTS).unlink()
    assert WEIGHTS in error(bundle)
    shutil.copy(trained["bundle"] / WEIGHTS, bundle / WEIGHTS)
    frozen = manifest["encoders"]["rna"]["weights"]
    (bundle / frozen).unlink()
    assert frozen in error(bundle)

    model = load_model(trained["bundle"], device="cpu")
    short = ModelInput("tx1", "ACGT" * 10, "ACGU", None)
    with pytest.raises(InputError, match="tx1.*40 bp.*512 bp"):
        model.predict([short])


@pytest.mark.slow
def test_the_docs_manifest_table_names_every_key_of_an_exported_manifest(trained):
    """docs/bundle.md's manifest.json row is the manifest's reference: a key the export
    writes and the row leaves out (`data` was) is one a reader cannot look up."""
    docs = (REPO / "docs" / "bundle.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `manifest.json` |"))
    named = set(re.findall(r"`([a-z_0-9]+)", row))
    written = json.loads((trained["bundle"] / "manifest.json").read_text())
    assert set(written) <= named, sorted(set(written) - named)


def test_export_finds_the_checkpoint_a_settings_change_moved_aside(trained, tmp_path):
    """A later run with other settings moves the checkpoints to previous/<hash>/: the
    export finds them there by what they were trained from, and refuses any others."""
    run_dir = shutil.copytree(trained["run_dir"], tmp_path / "run")
    kwargs = trained["kwargs"]
    fingerprint = run_fingerprint(
        kwargs["config"], EXPERIMENT, kwargs["dataset_path"], kwargs["cache_dirs"]
    )
    (run_dir / "previous").mkdir(exist_ok=True)
    checkpoint_dir(run_dir).rename(run_dir / "previous" / fingerprint_hash(fingerprint))
    manifest = export_bundle(run_dir, tmp_path / "m", check_n=4, **kwargs)
    assert manifest["checkpoint"]["sha256"] == trained["manifest"]["checkpoint"]["sha256"]
    other = copy.deepcopy(kwargs)
    other["config"]["train"]["lr"] = 1.0
    with pytest.raises(InputError, match="no checkpoints trained with these settings"):
        export_bundle(run_dir, tmp_path / "n", **other)
    assert not (tmp_path / "n").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recorded", "seen", "key"),
    [
        ({"commit": "aaa", "sha256": None}, {"commit": "bbb"}, "commit"),
        ({"commit": None, "sha256": {"m.pt": "1"}}, {"sha256": {"m.pt": "2"}}, "sha256"),
    ],
    ids=["commit", "sha256"],
)
def test_pretrained_weights_of_another_download_are_refused(trained, tmp_path, recorded, seen, key):
    # the bundle records the pretrained weights' download (commit, or each file's sha256);
    # a folder holding another download at that path is refused before any weight is read
    bundle = shutil.copytree(trained["bundle"], tmp_path / "b")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "isoflow_source.json").write_text(json.dumps(seen))
    manifest = json.loads((bundle / MANIFEST).read_text())
    entry = manifest["encoders"]["rna"]
    entry["spec"]["source"] = "pretrained"
    entry["pretrained"] = {"path": str(weights), **recorded}
    # as exported with that record: the manifest's own digest follows (else the digest check
    # refuses the edited manifest before the weights' record is compared)
    manifest[DIGESTS][MANIFEST] = manifest_digest(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError) as err:
        load_model(bundle, device="cpu")
    assert str(err.value) == (
        f"{weights / 'isoflow_source.json'}:{key}: {seen[key]!r} differs from the "
        f"{recorded[key]!r} the model was trained with ({bundle}): other "
        f"{entry['name']} weights; give the folder of those it was trained with "
        "(manifest.json encoders.rna.pretrained.path)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("text", ['{"commit": "aa', "[1, 2]"], ids=["truncated", "not_an_object"])
def test_a_broken_download_record_of_the_pretrained_weights_is_one_line(trained, tmp_path, text):
    # the weights folder's isoflow_source.json, truncated or not a JSON object: the project's
    # one line naming the file (it was a raw JSONDecodeError, or an AttributeError on .get)
    bundle = shutil.copytree(trained["bundle"], tmp_path / "b")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "isoflow_source.json").write_text(text)
    manifest = json.loads((bundle / MANIFEST).read_text())
    entry = manifest["encoders"]["rna"]
    entry["spec"]["source"] = "pretrained"
    entry["pretrained"] = {"path": str(weights), "commit": "aaa", "sha256": None}
    manifest[DIGESTS][MANIFEST] = manifest_digest(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError) as err:
        load_model(bundle, device="cpu")
    assert str(err.value).startswith(f"{weights / 'isoflow_source.json'}")
    assert "\n" not in str(err.value)


def _tampered_run(trained, tmp_path, change) -> tuple:
    """A copy of the run whose best checkpoint's hyper_parameters ``change`` altered (its
    fingerprint kept, and recorded as the checkpoint tested: the export still takes it for
    the run's), and the checkpoint."""
    import torch

    from isoflow.checkpoints import record_tested

    run_dir = shutil.copytree(trained["run_dir"], tmp_path / "run")
    [checkpoint] = (run_dir / "checkpoints").glob("best-epoch*.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    change(saved["hyper_parameters"])
    torch.save(saved, checkpoint)
    record_tested(checkpoint)
    return run_dir, checkpoint


@pytest.mark.slow
def test_export_refuses_a_checkpoint_of_other_tissues(trained, tmp_path):
    def swap(hparams):
        hparams["tissues"] = [*hparams["tissues"][1:], hparams["tissues"][0]]

    run_dir, checkpoint = _tampered_run(trained, tmp_path, swap)
    _, tissues = read_dataset(trained["dataset"])
    with pytest.raises(InputError) as err:
        export_bundle(run_dir, tmp_path / "m", **trained["kwargs"])
    assert str(err.value) == (
        f"{checkpoint}:tissues: differ from the dataset's ({trained['dataset']}): tissue 1 is "
        f"{tissues[1]} here, {tissues[0]} there; train the run again (rule train)"
    )
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_export_refuses_a_cache_of_another_dim_than_the_checkpoints(trained, tmp_path):
    def widen(hparams):
        hparams["cached_dims"] = {
            **hparams["cached_dims"],
            "rna": hparams["cached_dims"]["rna"] + 1,
        }

    run_dir, _ = _tampered_run(trained, tmp_path, widen)
    cache = trained["kwargs"]["cache_dirs"]["rna"]
    dim = json.loads((Path(cache) / "meta.json").read_text())["dim"]
    with pytest.raises(InputError) as err:
        export_bundle(run_dir, tmp_path / "m", **trained["kwargs"])
    assert str(err.value) == (
        f"{cache}:dim: {dim} differs from the checkpoint's {dim + 1}: give the cache the run "
        "was trained with"
    )
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_export_refuses_a_dna_window_other_than_the_configs(trained, tmp_path):
    # dna.window is not in the run's fingerprint: the checkpoint is found, the windows checked
    kwargs = copy.deepcopy(trained["kwargs"])
    kwargs["config"]["dna"]["window"] = 256
    with pytest.raises(InputError) as err:
        export_bundle(trained["run_dir"], tmp_path / "m", **kwargs)
    assert str(err.value) == (
        f"{trained['dataset']}:window_end: DNA windows of [512] bp; config dna.window is 256: "
        "export with the config the dataset was built with"
    )
    assert not (tmp_path / "m").exists()


def test_model_outputs_name_configured_runs_only():
    from isoflow.workflow import model_outputs

    runs = {"a_s0": {}, "b_s0": {}}
    assert model_outputs({"models": {"export": ["b_s0"]}}, runs) == ["results/models/b_s0"]
    assert model_outputs({}, runs) == []
    with pytest.raises(InputError, match="models.export.*'c_s0' is not a configured run"):
        model_outputs({"models": {"export": ["c_s0"]}}, runs)


def test_import_isoflow_stays_torch_free():
    script = "import sys, isoflow; assert 'torch' not in sys.modules; isoflow.load_model"
    subprocess.run([sys.executable, "-c", script], check=True, env=_env())


@pytest.mark.slow
def test_bundle_encodes_as_the_cache_was_built(trained, tmp_path, monkeypatch):
    """A cache built under bf16 autocast on a GPU (meta.json `autocast`) gives a bundle that
    encodes new sequences under the same precision, so scores, ISM and variant effects see
    what training read; a cache without it, fp32. (On this CPU autocast is never entered,
    so the predictions themselves do not move.)"""
    import isoflow.embed as embed

    assert {
        e["precision"] for e in trained["manifest"]["encoders"].values() if "precision" in e
    } == {"fp32"}

    class Bf16Cache(embed.EmbeddingCache):
        def __init__(self, path):
            super().__init__(path)
            self.meta = {**self.meta, "autocast": "bf16"}

    monkeypatch.setattr(embed, "EmbeddingCache", Bf16Cache)
    manifest = export_bundle(trained["run_dir"], tmp_path / "b", check_n=4, **trained["kwargs"])
    cached = {m: e for m, e in manifest["encoders"].items() if e["mode"] == "cached"}
    assert cached and {e["precision"] for e in cached.values()} == {"bf16"}

    seen = []
    real = embed.encode_pooled

    def spy(*args, **kwargs):
        seen.append(args[5] if len(args) > 5 else kwargs.get("precision", "fp32"))
        return real(*args, **kwargs)

    monkeypatch.setattr(embed, "encode_pooled", spy)
    model = load_model(tmp_path / "b", device="cpu")
    _, _, inputs = _test_inputs(trained)
    model.predict(inputs[:3])
    assert seen and set(seen) == {"bf16"}


def test_a_bundle_of_positional_caches_pools_new_sequences_by_position(tmp_path):
    """A run on positionally pooled caches (embed_positional) exports a bundle whose manifest
    records the pooling, and which re-predicts its test transcripts from their sequences
    within the export check's tolerance: it pools new sequences as the caches were pooled."""
    pooling = {"mode": "positional", "dna_crop_bins": 4, "stride_nt": 24, "stride_aa": 4}
    built = tiny_bundles(tmp_path, pooling=pooling, check_n=8)
    cached = [e for e in built["manifests"][0]["encoders"].values() if e["mode"] == "cached"]
    assert len(cached) == 2 and all(e["pooling"] == pooling for e in cached)
    model = load_model(built["paths"][0], device="cpu")
    assert {p["mode"] for _, p in model.frozen.values()} == {"positional"}


@pytest.mark.parametrize("compiled", [False, True])
def test_export_check_allows_a_compiled_cache_its_own_tolerance(tmp_path, compiled):
    """A cached modality built through torch.compile (manifest `compile`) is checked against
    the "compiled cache" tolerance (5e-2, a choice), any other float32 bundle against 2e-4:
    a 0.01 miss fails the one and passes the other."""
    from types import SimpleNamespace

    from isoflow import bundle

    tissues = ["Liver", "Lung"]
    frame = pd.DataFrame(
        {"transcript_id": ["T1", "T2", "T3"], "split": ["test", "train", "test"]}
    ).assign(rna_seq="ACGU", protein_seq=None)
    rows = [(t, tissue, 1.0 + i) for i, t in enumerate(["T1", "T3"]) for tissue in tissues]
    pd.DataFrame(rows, columns=["transcript_id", "tissue", "predicted"]).to_parquet(
        tmp_path / "predictions.parquet"
    )
    entry = {"mode": "cached", **({"compile": "inductor"} if compiled else {})}
    model = SimpleNamespace(
        modalities=("rna",),
        tissues=tissues,
        autocast=False,
        device=SimpleNamespace(type="cpu"),
        card={"encoders": {"rna": entry, "protein": None}},
        predict=lambda inputs: np.array([[1.01, 1.01], [2.01, 2.01]], dtype=np.float32),
    )
    check = lambda: bundle._check(model, tmp_path, frame, None, None, 64)  # noqa: E731
    if compiled:
        assert check()["arithmetic"] == "compiled cache"
        assert check()["tolerance"] == bundle.CHECK_TOLERANCE["compiled cache"] == 5e-2
    else:
        with pytest.raises(InputError, match=r"tolerance 0.0002, float32"):
            check()


# ---- the bundle's files against the sha256 its manifest records (a truncated model.pt was
# an OSError traceback, an edited pool_to or window other predictions with exit 0)


def _one_line(bundle, match):
    with pytest.raises(InputError) as caught:
        load_model(bundle, device="cpu")
    text = str(caught.value)
    assert "\n" not in text and str(bundle) in text, text
    assert match in text, text
    return text


@pytest.mark.slow
def test_damaged_or_edited_bundles_are_one_line_errors(trained, tmp_path):
    from isoflow.bundle import DIGESTS

    manifest = json.loads((trained["bundle"] / MANIFEST).read_text())
    weights = {e["weights"] for e in manifest["encoders"].values() if e.get("weights")}
    assert weights and set(manifest[DIGESTS]) == {WEIGHTS, MANIFEST, *weights}
    frozen = manifest["encoders"]["rna"]["weights"]
    for name in (WEIGHTS, frozen):
        bundle = shutil.copytree(trained["bundle"], tmp_path / name.replace("/", "_"))
        data = (bundle / name).read_bytes()
        (bundle / name).write_bytes(data[: len(data) // 2])
        _one_line(bundle, f"{name}: does not match its manifest (sha256")

    def edited(tag, edit):
        bundle = shutil.copytree(trained["bundle"], tmp_path / tag)
        changed = json.loads((bundle / MANIFEST).read_text())
        edit(changed)
        (bundle / MANIFEST).write_text(json.dumps(changed))
        return bundle

    def pool_to(m):
        m["encoders"]["rna"]["spec"]["pool_to"] = 2

    def tissue_name(m):
        m["tissues"][0] = "Brain"

    for tag, edit in (("pool", pool_to), ("tissue", tissue_name)):
        _one_line(edited(tag, edit), "edited after the export")
    old = edited("old", lambda m: m.pop(DIGESTS))
    _one_line(old, "export it again (snakemake --forcerun export_model export_models;")
    # the manifest keeps its digest when only a pretrained folder's path moves
    from isoflow.bundle import manifest_digest

    moved = copy.deepcopy(manifest)
    moved["encoders"]["rna"]["pretrained"] = {"path": "/a", "commit": "c", "sha256": None}
    again = copy.deepcopy(moved)
    again["encoders"]["rna"]["pretrained"]["path"] = "/elsewhere"
    assert manifest_digest(moved) == manifest_digest(again) != manifest_digest(manifest)


@pytest.mark.slow
def test_weights_that_do_not_fit_the_recorded_manifest_are_one_line(trained, tmp_path):
    """A manifest whose model sizes do not fit model.pt (digests recomputed, as an export
    with a bug would write it) was a RuntimeError listing every size mismatch; a file torch
    cannot read was an OSError."""
    from isoflow.bundle import _write_manifest

    bundle = shutil.copytree(trained["bundle"], tmp_path / "d")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["model"]["d_model"] *= 2
    _write_manifest(bundle, manifest)
    _one_line(bundle, "weights do not fit the model the manifest describes (size mismatch")
    bundle = shutil.copytree(trained["bundle"], tmp_path / "t")
    manifest = json.loads((bundle / MANIFEST).read_text())
    data = (bundle / WEIGHTS).read_bytes()
    (bundle / WEIGHTS).write_bytes(data[: len(data) // 2])
    _write_manifest(bundle, manifest)
    _one_line(bundle, f"{WEIGHTS}: unreadable (")


def test_the_card_names_only_the_inputs_the_model_reads():
    """A DNA-only bundle's card says nothing of an RNA or a protein it never reads (the
    manifest records their limits all the same)."""
    from isoflow.bundle import _card_inputs

    manifest = {
        "modalities": ["dna"],
        "dna": {"window": 512},
        "rna": {"max_nt": 600, "truncate": "keep_5prime"},
        "protein": {"max_aa": 30},
    }
    assert _card_inputs(manifest) == (
        "DNA 512 bp centred on the TSS, 5'->3' on the transcript's strand"
    )
    manifest["modalities"] = ["rna", "protein"]
    assert _card_inputs(manifest) == (
        "RNA up to 600 nt (keep_5prime); protein up to 30 residues (N-terminal part)"
    )


# ---- a manifest naming weight files outside its bundle (load_model read them, and isoflow
# finetune's write_bundle wrote copies of them outside its output folder)


@pytest.mark.slow
def test_a_manifest_naming_weights_outside_the_bundle_is_refused(trained, tmp_path):
    """The reviewer's case: the frozen encoder's file moved out of the bundle, the manifest
    pointing at it by ../, the digests recomputed as a sender would. load_model read it; now
    one line naming the manifest and the key, before any file is read."""
    from isoflow.bundle import _write_manifest

    bundle = shutil.copytree(trained["bundle"], tmp_path / "a" / "b" / "evil")
    manifest = json.loads((bundle / MANIFEST).read_text())
    name = manifest["encoders"]["rna"]["weights"]
    assert name.startswith("encoders/")
    (bundle / name).rename(tmp_path / "escape.pt")
    manifest["encoders"]["rna"]["weights"] = "../../../escape.pt"
    _write_manifest(bundle, manifest)  # digests of the files it names: they check out
    text = _one_line(bundle, "encoders.rna.weights: '../../../escape.pt' is not a file of")
    assert str(bundle / MANIFEST) in text
    for bad in (str(tmp_path / "escape.pt"), "encoders/../../x.pt", "model.pt", 3):
        manifest["encoders"]["rna"]["weights"] = bad
        (bundle / MANIFEST).write_text(json.dumps(manifest))
        _one_line(bundle, "encoders.rna.weights: ")


def test_bundle_files_may_not_lead_out_of_the_bundle(tmp_path):
    """A symbolic link inside a bundle to a file outside it is refused like a ../ name."""
    from isoflow.bundle import _bundle_file

    bundle = tmp_path / "bundle"
    (bundle / "encoders").mkdir(parents=True)
    (bundle / "encoders" / "ok.pt").write_bytes(b"x")
    (tmp_path / "outside.pt").write_bytes(b"x")
    (bundle / "encoders" / "link.pt").symlink_to(tmp_path / "outside.pt")
    assert _bundle_file(bundle, "encoders/ok.pt") == bundle / "encoders" / "ok.pt"
    for name in ("encoders/link.pt", "../outside.pt", str(tmp_path / "outside.pt")):
        with pytest.raises(InputError, match="leads outside the bundle's folder") as caught:
            _bundle_file(bundle, name)
        assert "\n" not in str(caught.value)


# ---- checkpoints loaded as data only (export and train's test of the best checkpoint
# unpickled them with weights_only=False: a checkpoint file could run any Python)


class _Touch:
    """Unpickled with weights_only=False, this creates a file: code run from a checkpoint."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(tmp_path):
    import torch

    from isoflow.bundle import read_checkpoint

    marker = tmp_path / "ran"
    checkpoint = tmp_path / "best-epoch001.ckpt"
    torch.save({"state_dict": {}, "epoch": 1, "x": _Touch(marker)}, checkpoint)
    with pytest.raises(InputError) as caught:
        read_checkpoint(checkpoint)
    text = str(caught.value)
    assert "\n" not in text and str(checkpoint) in text and "data only" in text, text
    assert not marker.exists()
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not loadable as a checkpoint of data only"):
        read_checkpoint(checkpoint)
    torch.save({"epoch": 1}, checkpoint)
    with pytest.raises(InputError, match="state_dict: missing"):
        read_checkpoint(checkpoint)


@pytest.mark.slow
def test_the_runs_own_checkpoints_load_as_data_only(trained):
    """What training writes (hyper-parameters, optimizer, loops and this project's callback
    states: MovableCheckpoint, StayStopped, History, RngState) is all data."""
    from isoflow.bundle import read_checkpoint

    files = sorted((trained["run_dir"] / "checkpoints").glob("*.ckpt"))
    assert {f.name for f in files} >= {"last.ckpt"} and len(files) >= 2
    for file in files:
        saved = read_checkpoint(file)
        assert saved["hyper_parameters"]["tissues"] and saved["optimizer_states"]
        states = " ".join(saved["callbacks"])
        for callback in ("ModelCheckpoint", "EarlyStopping", "History", "RngState"):
            assert callback in states, (file, states)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({}, (120, "keep_5prime")),  # the config's limits: rna.max_nt
        ({"max_len": 11, "truncate": "keep_3prime"}, (60, "keep_3prime")),  # the spec's own
    ],
)
def test_a_bundle_cuts_a_raw_sequence_as_its_runs_loader_did(trained, spec, expected):
    """A raw RNA was cut to the manifest's rna.max_nt while the run's loader cut it to what
    its encoder reads (a spec's own max_len / truncate): scoring read other letters than
    training did."""
    import torch

    from isoflow.bundle import Model
    from isoflow.loader import raw_cuts
    from isoflow.model.encoders import spec_from_config

    config = copy.deepcopy(TINY_CONFIG)
    config["encoders"]["nucleotide_transformer"].update(spec)
    experiment = {"modalities": ["rna"], "dna_encoder": "enformer"}
    loader = raw_cuts(config, experiment)
    assert (loader["rna_max_nt"], loader["rna_truncate"]) == expected
    manifest = copy.deepcopy(trained["manifest"])
    entry = {"name": "nucleotide_transformer", "mode": "raw", "weights": None}
    manifest["encoders"]["rna"] = {
        **entry,
        "spec": spec_from_config(config, "nucleotide_transformer"),
    }
    model = Model(manifest, torch.nn.Identity(), {}, torch.device("cpu"))
    rna = "".join("ACGT"[i % 4] for i in range(150)) + "GGGGGG"
    cut = model._sequence(ModelInput("t", rna=rna), "rna")
    assert cut == (rna[: expected[0]] if expected[1] == "keep_5prime" else rna[-expected[0] :])


@pytest.mark.slow
def test_a_bundle_encodes_new_sequences_to_its_caches_float16_bit_for_bit(tmp_path):
    """Rule embed runs a frozen encoder on `embed_batch_size` sequences per forward at the
    embed job's torch threads; on a CPU the float32 tokens of a sequence depend on both
    (tiny Enformer: ~1e-7), and a last-bit change can flip the float16 the cache stores,
    which the run's standardiser scales up (a narrowed demo's export missed by 0.04). The
    bundle encodes new sequences the same way (spec `embed_batch_size`, manifest
    `threads`), so every transcript's DNA, encoded in one call at other threads, is the
    cache's rows bit for bit: built at 1 thread, encoded at 2, all at once (before the fix:
    15 of 37 transcripts, 18 of 14,208 values, one float16 step away)."""
    import torch

    from isoflow.embed import EmbeddingCache

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        built = tiny_bundles(tmp_path, window=2048, cached={"dna": "enformer"}, check_n=8)
        assert built["manifests"][0]["encoders"]["dna"]["threads"] == 1
        torch.set_num_threads(2)
        model = load_model(built["paths"][0], device="cpu")
        frame, _ = read_dataset(built["dataset"])
        ids = list(frame["transcript_id"])
        rows = model.embed(dataset_inputs(frame, built["fasta"]), ["dna"], batch_size=len(ids))
        assert torch.get_num_threads() == 2  # set back after the frozen forwards
    finally:
        torch.set_num_threads(before)
    stored, mask = EmbeddingCache(built["caches"]["dna"]).lookup_items(ids)
    for i, got in enumerate(rows["dna"]):
        assert torch.equal(got, stored[i, : int(mask[i].sum())]), ids[i]


@pytest.mark.slow
def test_a_bundle_records_its_cpu_kernels_and_a_process_on_others_is_warned_once(
    trained, tmp_path, monkeypatch, caplog
):
    """Unheld on an AVX-512 CPU the demo's bundles missed their runs by up to 0.087 with
    exit 0 (docs/bundle.md): the manifest records the kernels its export check ran on, and a
    CPU load under other ones is one warning line naming the fix; matching kernels, or a
    bundle without the record (an old one), load without a word."""
    import isoflow.bundle as bundle_module
    from isoflow import cpu
    from isoflow.bundle import CPU_KERNELS, _write_manifest

    recorded = trained["manifest"][CPU_KERNELS]
    assert recorded == {"choice": cpu.held_choice(), **cpu.kernels_in_effect()}
    assert json.loads((trained["bundle"] / MANIFEST).read_text())[CPU_KERNELS] == recorded
    monkeypatch.setattr(bundle_module, "_KERNELS_WARNED", set())
    caplog.set_level("WARNING", logger="isoflow.bundle")
    load_model(trained["bundle"], device="cpu")
    assert not caplog.records  # the kernels it was exported on

    other = "AVX512" if recorded["cpu_capability"] != "AVX512" else "AVX2"
    monkeypatch.setattr("torch.backends.cpu.get_cpu_capability", lambda: other)
    for _ in range(2):  # an ensemble loads several bundles: said once
        load_model(trained["bundle"], device="cpu")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert str(trained["bundle"]) in lines[0] and other in lines[0], lines[0]
    assert "pin_for_command()" in lines[0] and "ISOFLOW_CPU_KERNELS" in lines[0], lines[0]

    caplog.clear()
    old = shutil.copytree(trained["bundle"], tmp_path / "old")
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest[CPU_KERNELS]
    _write_manifest(old, manifest)  # as exported before the record: digests of its own
    monkeypatch.setattr(bundle_module, "_KERNELS_WARNED", set())
    load_model(old, device="cpu")
    assert not caplog.records


def test_output_units_are_a_finetuned_bundles_table_units():
    from isoflow.bundle import output_units

    assert output_units({"run": "r"}) == "log(1 + TPM)"
    assert output_units({"finetune": {"source": {"table": "/x/lab.tsv"}}}) == (
        "the table's units (lab.tsv)"
    )
    assert output_units({"finetune": {"source": {}}}) == "the table's units"
