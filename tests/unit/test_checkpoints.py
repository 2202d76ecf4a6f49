"""A change of settings never deletes a trained model: checkpoints are kept by fingerprint
(results/runs/{run}/previous/<hash>/) and come back when their settings do; a bad setting
fails before the checkpoints are touched; the fingerprint names what shapes training."""

import copy
import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path

import pysam
import pytest
import torch

from helpers.training import TINY_CONFIG, make_dataset, rerun_matches, stopped_after_epoch
from isoflow.checkpoints import (
    ATTEMPTS_LOG,
    FINGERPRINT_FILE,
    LATER_TRAIN_DEFAULTS,
    TRAIN_KEYS_IF_SET,
    agreed_resume,
    best_checkpoint,
    fingerprint_hash,
    launch_key,
    prepare_checkpoints,
    record_tested,
    resume_checkpoint,
    run_fingerprint,
    unreadable,
)
from isoflow.errors import InputError
from isoflow.settings import TRAIN_DEFAULTS
from isoflow.train import run_experiment

EXPERIMENT = {"modalities": ["protein"]}  # the quickest tiny encoder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def config_with(**train):
    config = copy.deepcopy(TINY_CONFIG)
    config["train"].update({"max_epochs": 2, **train})
    return config


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def checkpoint_bytes(value: int = 0) -> bytes:
    """A real ``torch.save`` archive, as Lightning writes one."""
    buffer = io.BytesIO()
    torch.save({"epoch": value, "w": torch.full((5000,), float(value))}, buffer)
    return buffer.getvalue()


def fake_run(run_dir: Path, fingerprint: dict, epochs: int = 3) -> None:
    """What a trained run leaves: fingerprint, best and last checkpoints, a SLURM one."""
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / FINGERPRINT_FILE).write_text(json.dumps(fingerprint))
    (ckpt / f"best-epoch{epochs - 1:03d}.ckpt").write_bytes(checkpoint_bytes(fingerprint["lr"]))
    (ckpt / "last.ckpt").write_bytes(checkpoint_bytes(100))
    (run_dir / "hpc_ckpt_1.ckpt").write_bytes(checkpoint_bytes(200))


def test_same_fingerprint_leaves_checkpoints_alone(tmp_path):
    fake_run(tmp_path, {"lr": 1})
    before = snapshot(tmp_path)
    prepare_checkpoints(tmp_path, {"lr": 1})
    assert snapshot(tmp_path) == before


def test_changed_fingerprint_moves_checkpoints_aside_and_back(tmp_path):
    fake_run(tmp_path, {"lr": 1})
    first = snapshot(tmp_path)
    prepare_checkpoints(tmp_path, {"lr": 2})
    kept = tmp_path / "previous" / fingerprint_hash({"lr": 1})
    assert snapshot(kept) == {
        name.removeprefix("checkpoints/"): digest for name, digest in first.items()
    }, "the earlier run's files, all of them, under previous/<hash>/"
    assert snapshot(tmp_path / "checkpoints") == {
        FINGERPRINT_FILE: hashlib.sha256(
            (json.dumps({"lr": 2}, indent=2) + "\n").encode()
        ).hexdigest()
    }
    assert resume_checkpoint(tmp_path) is None, "the new settings start from scratch"

    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"second")
    prepare_checkpoints(tmp_path, {"lr": 1})  # back to the first settings
    assert snapshot(tmp_path / "previous") == {
        f"{fingerprint_hash({'lr': 2})}/{FINGERPRINT_FILE}": snapshot(
            tmp_path / "previous" / fingerprint_hash({"lr": 2})
        )[FINGERPRINT_FILE],
        f"{fingerprint_hash({'lr': 2})}/last.ckpt": hashlib.sha256(b"second").hexdigest(),
    }
    assert snapshot(tmp_path) == {
        **first,
        **{f"previous/{k}": v for k, v in snapshot(tmp_path / "previous").items()},
    }, "the first run restored as it was, its SLURM checkpoint back in the run folder"
    assert resume_checkpoint(tmp_path) is not None


def test_unrecorded_and_colliding_checkpoints_get_their_own_folder(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"legacy")
    (tmp_path / "previous" / "unrecorded").mkdir(parents=True)
    prepare_checkpoints(tmp_path, {"lr": 1})
    assert (tmp_path / "previous" / "unrecorded-1" / "last.ckpt").read_bytes() == b"legacy"
    assert (tmp_path / "previous" / "unrecorded").is_dir()


def test_an_unreadable_fingerprint_is_kept_aside_not_trusted(tmp_path):
    fake_run(tmp_path, {"lr": 1})
    (tmp_path / "checkpoints" / FINGERPRINT_FILE).write_text('{"lr": 1')  # hand-edited, cut
    prepare_checkpoints(tmp_path, {"lr": 1})
    assert (tmp_path / "previous" / "unrecorded" / "last.ckpt").read_bytes() == checkpoint_bytes(
        100
    )
    assert resume_checkpoint(tmp_path) is None


def test_a_kept_folder_of_other_settings_is_not_restored(tmp_path):
    """previous/<hash>/ is moved back only when its own fingerprint.json matches."""
    impostor = tmp_path / "previous" / fingerprint_hash({"lr": 2})
    impostor.mkdir(parents=True)
    (impostor / FINGERPRINT_FILE).write_text(json.dumps({"lr": 3}))
    (impostor / "last.ckpt").write_bytes(b"other")
    prepare_checkpoints(tmp_path, {"lr": 2})
    assert (impostor / "last.ckpt").read_bytes() == b"other"
    assert resume_checkpoint(tmp_path) is None


def test_a_folder_with_only_a_fingerprint_is_replaced(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / FINGERPRINT_FILE).write_text(json.dumps({"lr": 1}))
    prepare_checkpoints(tmp_path, {"lr": 2})
    assert not (tmp_path / "previous").exists()
    assert json.loads((tmp_path / "checkpoints" / FINGERPRINT_FILE).read_text()) == {"lr": 2}


def test_the_export_takes_the_checkpoint_the_run_tested_not_the_newest(tmp_path):
    """A kill after best-epoch005.ckpt was written but before last.ckpt leaves it behind; the
    resumed run (on a GPU not bit-identical) may end testing best-epoch004. The export took
    the newest by mtime, and its re-prediction check failed on every rerun: it now takes
    the one ``tested.json`` names, with the sha256 recorded there."""
    fake_run(tmp_path, {"lr": 1}, epochs=5)  # best-epoch004.ckpt
    folder = tmp_path / "checkpoints"
    (folder / "best-epoch005.ckpt").write_bytes(checkpoint_bytes(5))  # the orphan, newer
    os.utime(folder / "best-epoch004.ckpt", ns=(10**18, 10**18))
    # several and no record (runs tested before it was written): an error, not a guess
    with pytest.raises(InputError, match=r"2 best-epoch\*.ckpt .*no tested.json.*forcerun"):
        best_checkpoint(tmp_path, {"lr": 1})
    record = record_tested(folder / "best-epoch004.ckpt")
    assert record == {
        "file": "best-epoch004.ckpt",
        "sha256": hashlib.sha256((folder / "best-epoch004.ckpt").read_bytes()).hexdigest(),
    }
    assert best_checkpoint(tmp_path, {"lr": 1}) == folder / "best-epoch004.ckpt"
    # the record moves with the checkpoints when other settings set them aside
    prepare_checkpoints(tmp_path, {"lr": 2})
    kept = tmp_path / "previous" / fingerprint_hash({"lr": 1})
    assert best_checkpoint(tmp_path, {"lr": 1}) == kept / "best-epoch004.ckpt"
    prepare_checkpoints(tmp_path, {"lr": 1})

    # the tested checkpoint rewritten since (a rerun that did not test again), or gone
    (folder / "best-epoch004.ckpt").write_bytes(checkpoint_bytes(44))
    with pytest.raises(InputError, match="changed since the run was tested with it"):
        best_checkpoint(tmp_path, {"lr": 1})
    (folder / "best-epoch004.ckpt").unlink()
    with pytest.raises(InputError, match="tested with is not here"):
        best_checkpoint(tmp_path, {"lr": 1})
    (folder / "tested.json").write_text('{"file": "best-epoch0')  # cut short
    with pytest.raises(InputError, match="not a record of a checkpoint"):
        best_checkpoint(tmp_path, {"lr": 1})


def test_without_a_record_the_one_best_checkpoint_or_last_is_taken(tmp_path):
    """Runs tested before tested.json: their one best checkpoint, else last.ckpt."""
    fake_run(tmp_path, {"lr": 1}, epochs=3)
    folder = tmp_path / "checkpoints"
    assert best_checkpoint(tmp_path, {"lr": 1}) == folder / "best-epoch002.ckpt"
    (folder / "best-epoch002.ckpt").unlink()
    assert best_checkpoint(tmp_path, {"lr": 1}) == folder / "last.ckpt"


def test_a_resumed_run_sets_an_untracked_best_checkpoint_aside_and_records_its_own(
    dataset, tmp_path, monkeypatch
):
    """A best checkpoint the resumed training does not track (a kill left it) is moved to
    previous/unfit/ after training, and tested.json names the checkpoint that was tested:
    the one the export takes."""
    path, _ = dataset
    config = config_with(max_epochs=3, patience=50)
    run = tmp_path / "run"
    with stopped_after_epoch(monkeypatch):
        run_experiment(config, EXPERIMENT, path, run)
    folder = run / "checkpoints"
    # what a kill leaves: a best checkpoint of an epoch the resumed run will not write
    orphan = folder / "best-epoch007.ckpt"
    orphan.write_bytes(epoch_0 := (folder / "last.ckpt").read_bytes())
    run_experiment(config, EXPERIMENT, path, run)
    assert not orphan.exists()
    assert (run / "previous" / "unfit" / orphan.name).read_bytes() == epoch_0
    (tested,) = folder.glob("best-epoch*.ckpt")
    assert json.loads((folder / "tested.json").read_text())["file"] == tested.name
    fingerprint = run_fingerprint(config, EXPERIMENT, path)
    assert best_checkpoint(run, fingerprint) == tested


def test_fingerprint_follows_what_shapes_training(dataset, tmp_path):
    path, _ = dataset
    base = run_fingerprint(config_with(), EXPERIMENT, path)
    assert base == json.loads(json.dumps(base))  # JSON as written to fingerprint.json
    assert run_fingerprint(config_with(lr=1e-4), EXPERIMENT, path) != base
    assert run_fingerprint(config_with(), {"modalities": ["protein"], "seed": 1}, path) != base
    # defaults filled in: spelling out a default is the same run
    assert run_fingerprint(config_with(weight_decay=0.01), EXPERIMENT, path) == base
    # what cannot change the weights is left out
    assert run_fingerprint(config_with(progress_bar=True), EXPERIMENT, path) == base
    assert run_fingerprint(config_with(eval_batch_size=3), EXPERIMENT, path) == base
    # keys added after runs were trained count only when set away from their default (the
    # behaviour before them), so those runs keep their checkpoints
    assert not set(TRAIN_KEYS_IF_SET) & set(base["train"])
    defaults = {key: {**TRAIN_DEFAULTS, **LATER_TRAIN_DEFAULTS}[key] for key in TRAIN_KEYS_IF_SET}
    assert run_fingerprint(config_with(**defaults), EXPERIMENT, path) == base
    for key, value in [
        ("grad_clip", 1.0),
        ("warmup_steps", 10),
        ("warmup_steps", 0.1),
        ("schedule", "cosine"),
        ("decay_norms_biases", False),
        ("compile", True),
        ("cuda_graph", True),
    ]:
        changed = run_fingerprint(config_with(**{key: value}), EXPERIMENT, path)
        assert changed["train"][key] == value and changed != base, key
    # num_workers changes the weights (the loader's seed draws from the global RNG)
    assert run_fingerprint(config_with(num_workers=2), EXPERIMENT, path) != base
    # an encoder the experiment does not use is left out; one it uses counts
    other = config_with()
    other["encoders"]["enformer"]["hparams"]["depth"] = 2
    assert run_fingerprint(other, EXPERIMENT, path) == base
    other["encoders"]["esm2"]["hparams"]["num_layers"] = 2
    assert run_fingerprint(other, EXPERIMENT, path) != base

    # the dataset by content: the same bytes written again keep the fingerprint
    copy_path = tmp_path / "dataset.parquet"
    copy_path.write_bytes(path.read_bytes())
    os.utime(copy_path, ns=(1, 1))
    assert run_fingerprint(config_with(), EXPERIMENT, copy_path)["dataset"] == base["dataset"]
    copy_path.write_bytes(path.read_bytes() + b"\0")
    assert run_fingerprint(config_with(), EXPERIMENT, copy_path)["dataset"] != base["dataset"]

    # an embedding cache by its files' size and modification time
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text("{}")
    with_cache = run_fingerprint(config_with(), EXPERIMENT, path, {"protein": cache})
    # Snakemake's marker of a touched directory output (`snakemake --touch`) is not the cache
    (cache / ".snakemake_timestamp").write_text("")
    assert run_fingerprint(config_with(), EXPERIMENT, path, {"protein": cache}) == with_cache
    os.utime(cache / "meta.json", ns=(1, 1))
    assert run_fingerprint(config_with(), EXPERIMENT, path, {"protein": cache}) != with_cache


def test_a_record_counting_the_touch_marker_still_matches(tmp_path):
    """A fingerprint written while a cache held `.snakemake_timestamp` (a `--touch` before
    the marker was left out) matches the fingerprint without it."""
    fingerprint = {"train": {}, "caches": {"dna": {"meta.json": [2, 5]}}}
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    recorded = {
        "train": {},
        "caches": {"dna": {"meta.json": [2, 5], ".snakemake_timestamp": [0, 9]}},
    }
    (ckpt / "fingerprint.json").write_text(json.dumps(recorded))
    (ckpt / "last.ckpt").write_bytes(b"x")
    prepare_checkpoints(tmp_path, fingerprint)
    assert (ckpt / "last.ckpt").exists() and not (tmp_path / "previous").exists()


def test_sections_of_modalities_a_run_does_not_read_are_not_its_fingerprint(dataset):
    """A protein-only run: the RNA limits and the RNA encoder's name shape nothing it
    trains, so editing them keeps its checkpoints; its own section still counts."""
    path, _ = dataset
    base = run_fingerprint(config_with(), EXPERIMENT, path)
    assert "rna" not in base and "rna_encoder" not in base["model"] and "protein" in base
    other = config_with()
    other["rna"] = {"max_nt": 600, "truncate": "keep_3prime"}
    other["model"] = {**other.get("model", {}), "rna_encoder": "another"}
    other["model"]["cached_modalities"] = ["rna"]
    assert run_fingerprint(other, EXPERIMENT, path) == base
    other["protein"] = {"max_aa": 50}
    assert run_fingerprint(other, EXPERIMENT, path) != base
    rna_run = {"modalities": ["rna"]}
    rna = run_fingerprint(config_with(), rna_run, path)
    other = config_with()
    other["rna"] = {"max_nt": 600}
    assert run_fingerprint(other, rna_run, path) != rna


def test_a_record_holding_unread_sections_still_matches(dataset, tmp_path):
    """Checkpoints recorded with every section (before the unread ones were left out) match
    the fingerprint without them, in checkpoints/ and set aside under their old hash."""
    path, _ = dataset
    fingerprint = run_fingerprint(config_with(), EXPERIMENT, path)
    recorded = {
        **fingerprint,
        "rna": {"max_nt": 12282, "truncate": "keep_5prime"},
        "model": {**fingerprint["model"], "rna_encoder": "nucleotide_transformer"},
    }
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / FINGERPRINT_FILE).write_text(json.dumps(recorded))
    (ckpt / "best-epoch001.ckpt").write_bytes(b"best")
    prepare_checkpoints(tmp_path, fingerprint)
    assert (ckpt / "best-epoch001.ckpt").exists() and not (tmp_path / "previous").exists()
    assert best_checkpoint(tmp_path, fingerprint) == ckpt / "best-epoch001.ckpt"

    # set aside under the old record's hash (another fingerprint trained since)
    old_name = tmp_path / "previous" / fingerprint_hash(recorded)
    old_name.parent.mkdir()
    ckpt.rename(old_name)
    assert best_checkpoint(tmp_path, fingerprint) == old_name / "best-epoch001.ckpt"
    prepare_checkpoints(tmp_path, fingerprint)
    assert (ckpt / "best-epoch001.ckpt").read_bytes() == b"best" and not old_name.exists()


def test_checkpoints_set_aside_as_unfit_are_never_restored(tmp_path):
    (tmp_path / "previous" / "unfit").mkdir(parents=True)
    (tmp_path / "previous" / "unfit" / FINGERPRINT_FILE).write_text(json.dumps({"lr": 1}))
    (tmp_path / "previous" / "unfit" / "last.ckpt").write_bytes(b"unfit")
    with pytest.raises(InputError, match="no checkpoints trained with these settings"):
        best_checkpoint(tmp_path, {"lr": 1})
    prepare_checkpoints(tmp_path, {"lr": 1})
    assert resume_checkpoint(tmp_path) is None
    assert (tmp_path / "previous" / "unfit" / "last.ckpt").read_bytes() == b"unfit"


@pytest.mark.slow
def test_changed_settings_keep_the_trained_model(dataset, tmp_path):
    """Train, change train.lr, train again: the first run's best checkpoint is still on disk
    (previous/<hash>/); a bad setting then fails before touching anything; the first
    settings again bring the first run back."""
    path, _ = dataset
    first_config = config_with()
    run_experiment(first_config, EXPERIMENT, path, tmp_path)
    first = snapshot(tmp_path / "checkpoints")
    first_log = (tmp_path / "checkpoints" / ATTEMPTS_LOG).read_text()
    assert any(name.startswith("best-") for name in first), first
    first_hash = fingerprint_hash(run_fingerprint(first_config, EXPERIMENT, path))

    second_config = config_with(lr=1e-2)
    run_experiment(second_config, EXPERIMENT, path, tmp_path)
    assert snapshot(tmp_path / "previous" / first_hash) == first
    second = snapshot(tmp_path / "checkpoints")
    assert any(name.startswith("best-") for name in second) and second != first

    before = snapshot(tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.ckpt")}
    with pytest.raises(InputError, match=r"^config:train.lr: 'fast' is not of type 'number'$"):
        run_experiment(config_with(lr="fast"), EXPERIMENT, path, tmp_path)
    assert snapshot(tmp_path) == before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.ckpt")} == mtimes

    run_experiment(first_config, EXPERIMENT, path, tmp_path)  # resumes at max_epochs: no step
    again = snapshot(tmp_path / "checkpoints")
    assert again.pop(ATTEMPTS_LOG) != first.pop(ATTEMPTS_LOG) and again == first
    # the attempts log came back with its checkpoints and goes on from them
    restored = (tmp_path / "checkpoints" / ATTEMPTS_LOG).read_text()
    assert restored.startswith(first_log) and "==== attempt 2 of" in restored
    second_hash = fingerprint_hash(run_fingerprint(second_config, EXPERIMENT, path))
    assert snapshot(tmp_path / "previous" / second_hash) == second


@pytest.mark.parametrize(
    ("value", "enabled", "warn_only"),
    [(True, True, False), (False, False, False), ("warn", True, True)],
)
def test_deterministic_reaches_lightning_as_written(dataset, tmp_path, value, enabled, warn_only):
    """``deterministic``: true is strict (an op without a deterministic kernel fails), warn
    (config.yaml) is Lightning's warn-only mode, not True, and false turns both off, also
    after an earlier run in this process turned them on."""
    path, _ = dataset
    before = torch.are_deterministic_algorithms_enabled()
    # the opposite of what the run is to set, so that the run must change it
    torch.use_deterministic_algorithms(not enabled, warn_only=not warn_only)
    try:
        run_experiment(config_with(max_epochs=1, deterministic=value), EXPERIMENT, path, tmp_path)
        assert torch.are_deterministic_algorithms_enabled() is enabled
        if enabled:
            assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
    finally:
        torch.use_deterministic_algorithms(before)


def test_checkpoints_recorded_with_eval_batch_size_resume(dataset, tmp_path):
    """A fingerprint written while eval_batch_size counted (it cannot change the weights)
    still matches: changing it on the cluster resumes the trained model."""
    path, _ = dataset
    fingerprint = run_fingerprint(config_with(eval_batch_size=4), EXPERIMENT, path)
    assert "eval_batch_size" not in fingerprint["train"]
    recorded = copy.deepcopy(fingerprint)
    recorded["train"]["eval_batch_size"] = None  # as written before
    fake_run(tmp_path, {**recorded, "lr": 1})
    (tmp_path / "checkpoints" / FINGERPRINT_FILE).write_text(json.dumps(recorded))
    before = snapshot(tmp_path)
    prepare_checkpoints(tmp_path, fingerprint)
    assert snapshot(tmp_path) == before and not (tmp_path / "previous").exists()


def test_dataset_digest_reused_from_the_digest_cache(dataset, tmp_path, monkeypatch):
    """The train job does not read the whole dataset again when the provenance digest cache
    (.isoflow/digests/) holds its sha256 for this version of the file; a touched file is
    hashed afresh."""
    from isoflow import provenance

    path, _ = dataset
    data = tmp_path / "dataset.parquet"
    data.write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    real = provenance.file_digest(data)

    def digest():
        return run_fingerprint(config_with(), EXPERIMENT, "dataset.parquet")["dataset"]["sha256"]

    assert digest() == real
    (entry_path,) = Path(provenance.DIGEST_DIR).glob("*.json")
    entry = json.loads(entry_path.read_text())
    entry[provenance.HASH] = "f" * 64  # proves the cached digest is what is used
    entry_path.write_text(json.dumps(entry))
    assert digest() == "f" * 64
    os.utime(data, ns=(1, 1))  # another version of the file: the cache no longer speaks for it
    assert digest() == real


def test_last_checkpoint_is_written_every_epoch(dataset, tmp_path):
    """last.ckpt holds the last finished epoch also when val_loss stopped improving, so a
    killed or requeued job resumes there, not at the best epoch."""
    path, _ = dataset
    # an LR too small to move float32 weights: val_loss stays where it was (or moves in the
    # last bits), so the best checkpoint stays at an early epoch
    run_experiment(config_with(max_epochs=6, lr=1e-12), EXPERIMENT, path, tmp_path)
    (best,) = (tmp_path / "checkpoints").glob("best-epoch*.ckpt")
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 5
    assert int(best.stem.removeprefix("best-epoch")) < 5, "val_loss improved every epoch"


# ------------------------------------------------- checkpoints cut short (a kill mid-write)


def test_a_checkpoint_with_any_byte_damaged_is_judged_not_raised_on(tmp_path):
    """A damaged byte, not only a cut or a zeroed stretch, can make zipfile raise almost
    anything (UnicodeDecodeError, NotImplementedError, ValueError were found): each is a
    checkpoint that cannot be trusted, named, never a traceback on every resume."""
    whole = checkpoint_bytes(1)
    path = tmp_path / "last.ckpt"
    judged = []
    for i in range(0, len(whole), 11):
        damaged = bytearray(whole)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        judged.append(unreadable(path))  # raises nothing
    assert sum(j is not None for j in judged) > len(judged) // 2
    damaged = bytearray(whole)
    damaged[26] ^= 0xFF  # a byte of the first member's name: UnicodeDecodeError before
    path.write_bytes(bytes(damaged))
    assert unreadable(path) is not None


def test_a_checkpoint_cut_short_is_set_aside_and_the_next_one_resumed(tmp_path, caplog):
    """A last.ckpt cut short (a job killed while Lightning copied it into place from $TMPDIR
    on another filesystem) made every rerun die in torch.load: it is passed over, moved to
    previous/unfit/ (never deleted) with a warning naming it, and the next complete
    candidate resumed: a SLURM checkpoint, else the best of the highest epoch."""
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    whole = checkpoint_bytes(3)
    (ckpt / "last.ckpt").write_bytes(whole[: len(whole) * 6 // 10])
    (ckpt / "best-epoch001.ckpt").write_bytes(checkpoint_bytes(1))
    (ckpt / "best-epoch002.ckpt").write_bytes(checkpoint_bytes(2))
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(checkpoint_bytes(2))
    os.utime(tmp_path / "hpc_ckpt_1.ckpt", ns=(1, 1))  # older than last.ckpt

    # another DDP rank only passes it over (rank 0 moves it)
    assert resume_checkpoint(tmp_path, set_aside=False) == tmp_path / "hpc_ckpt_1.ckpt"
    assert (ckpt / "last.ckpt").exists()
    with caplog.at_level("WARNING", logger="isoflow.checkpoints"):
        assert resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
    unfit = tmp_path / "previous" / "unfit"
    assert (unfit / "last.ckpt").read_bytes() == whole[: len(whole) * 6 // 10]
    assert not (ckpt / "last.ckpt").exists()
    assert str(ckpt / "last.ckpt") in caplog.text and "not a complete checkpoint" in caplog.text

    # the SLURM one cut short too, and a best one empty: the highest complete best epoch
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(checkpoint_bytes(2)[:-100])
    (ckpt / "best-epoch003.ckpt").write_bytes(b"")
    assert resume_checkpoint(tmp_path) == ckpt / "best-epoch002.ckpt"
    assert sorted(p.name for p in unfit.iterdir()) == [
        "best-epoch003.ckpt",
        "hpc_ckpt_1.ckpt",
        "last.ckpt",
    ]
    assert unreadable(ckpt / "best-epoch002.ckpt") is None
    # the right length, a stretch never written (zeros after a crash of the machine)
    hole = bytearray(checkpoint_bytes(4))
    start = hole.index(bytes(torch.full((5000,), 4.0).numpy().tobytes()[:64]))
    hole[start : start + 4096] = bytes(4096)
    (ckpt / "best-epoch004.ckpt").write_bytes(bytes(hole))
    assert "CRC-32 differs" in unreadable(ckpt / "best-epoch004.ckpt")
    # without the CRCs (a requeue's last line): its directory is whole, and the cut-short
    # or empty ones still fail; only the full check decides what a run resumes from
    assert unreadable(ckpt / "best-epoch004.ckpt", crc=False) is None
    assert resume_checkpoint(tmp_path, set_aside=False, crc=False) == ckpt / "best-epoch004.ckpt"
    assert unreadable(unfit / "hpc_ckpt_1.ckpt", crc=False) is not None
    assert unreadable(unfit / "best-epoch003.ckpt", crc=False) is not None
    assert resume_checkpoint(tmp_path) == ckpt / "best-epoch002.ckpt"
    assert (unfit / "best-epoch004.ckpt").exists()
    # a second last.ckpt cut short keeps the first one set aside
    (ckpt / "last.ckpt").write_bytes(b"PK\x03\x04")
    assert resume_checkpoint(tmp_path) == ckpt / "best-epoch002.ckpt"
    assert (unfit / "last-1.ckpt").read_bytes() == b"PK\x03\x04"
    assert (unfit / "last.ckpt").read_bytes() == whole[: len(whole) * 6 // 10]


class Killed(BaseException):
    """A SIGKILL where the test can look afterwards."""


def test_checkpoints_are_written_in_their_own_folder_not_moved_from_tmpdir(
    dataset, tmp_path, monkeypatch
):
    """Lightning wrote each checkpoint to a file in $TMPDIR and shutil.move'd it; across
    filesystems (node-local /tmp, NFS results/) that move is a copy into last.ckpt itself,
    and a kill during it left last.ckpt cut short. The run now writes beside the checkpoint
    and renames: nothing is moved from $TMPDIR, nothing is left there."""
    import shutil
    import tempfile

    path, _ = dataset

    def move_across_filesystems_killed(src, dst, *args, **kwargs):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])  # copy2 under way ...
        raise Killed  # ... when the job is killed

    monkeypatch.setattr(shutil, "move", move_across_filesystems_killed)
    tmpdir = tmp_path / "node-local-tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
    run_experiment(config_with(max_epochs=2), EXPERIMENT, path, tmp_path / "run")
    saved = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert len(saved) == 2 and saved[-1].name == "last.ckpt"
    for checkpoint in saved:
        assert torch.load(checkpoint, weights_only=False)["epoch"] in (0, 1)
    assert list(tmpdir.iterdir()) == []


def test_a_checkpoint_write_killed_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    """A kill while a checkpoint is written: the path keeps the previous one whole."""
    from isoflow.lightning import AtomicCheckpointIO

    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 0}, target)
    real_save = torch.save

    def killed_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half")
        raise Killed

    monkeypatch.setattr(torch, "save", killed_save)
    with pytest.raises(Killed):
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(target, weights_only=False) == {"epoch": 0}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    # what a SIGKILL leaves (no exception handler ran) goes at the next write
    left = target.parent / ".last.ckpt.abcd1234.tmp"
    left.write_bytes(b"PK\x03\x04 half")
    (target.parent / ".best-epoch001.ckpt.abcd1234.tmp").write_bytes(b"another's")
    AtomicCheckpointIO().save_checkpoint({"epoch": 2}, target)
    assert sorted(p.name for p in target.parent.iterdir()) == [
        ".best-epoch001.ckpt.abcd1234.tmp",
        "last.ckpt",
    ]


@pytest.mark.slow
def test_a_rerun_after_a_last_checkpoint_cut_short_ends_as_an_uninterrupted_run(
    dataset, tmp_path, monkeypatch
):
    """The reviewer's case: a job killed while its last.ckpt was copied into place. The
    rerun sets it aside, resumes from the best checkpoint of the highest epoch (the whole
    training state of that epoch) and ends with the files of an uninterrupted run."""
    path, _ = dataset
    config = config_with(max_epochs=4, patience=50)
    run_experiment(config, EXPERIMENT, path, tmp_path / "whole")
    with stopped_after_epoch(monkeypatch, 2):
        run_experiment(config, EXPERIMENT, path, tmp_path / "cut")
    run = tmp_path / "cut"
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:9_000])
    rerun_matches(config, EXPERIMENT, path, run, tmp_path / "whole")
    assert (run / "previous" / "unfit" / "last.ckpt").stat().st_size == 9_000


# ---------------------------------------- inputs read raw: the genome, pretrained weights


def test_a_run_reading_dna_raw_is_fingerprinted_by_the_genomes_content(dataset, tmp_path):
    """The dataset holds the windows' coordinates, not their letters: a genome edited
    outside the exons left it byte-identical, and a raw-DNA run resumed its finished
    checkpoint on the new genome and wrote the old model's metrics as fresh ones. Its
    fingerprint now holds the genome's sha256; a run reading DNA from a cache does not."""
    path, fasta = dataset
    genome = tmp_path / "genome.fa"
    genome.write_bytes(fasta.read_bytes())
    raw = {"modalities": ["dna", "protein"]}
    base = run_fingerprint(config_with(), raw, path, genome_fasta=genome)
    assert base["genome"] == {"sha256": hashlib.sha256(genome.read_bytes()).hexdigest()}
    # the genome the dataset records, as the loader reads it, when none is given
    assert run_fingerprint(config_with(), raw, path)["genome"] == base["genome"]
    os.utime(genome, ns=(1, 1))  # the same bytes, touched into the past
    assert run_fingerprint(config_with(), raw, path, genome_fasta=genome) == base
    lines = genome.read_text().splitlines()
    lines[-1] = ("T" if lines[-1][0] != "T" else "A") + lines[-1][1:]  # one base changed
    genome.write_text("\n".join(lines) + "\n")
    changed = run_fingerprint(config_with(), raw, path, genome_fasta=genome)
    assert changed["genome"] != base["genome"]
    assert {k: v for k, v in changed.items() if k != "genome"} == {
        k: v for k, v in base.items() if k != "genome"
    }, "the dataset and every setting as they were: only the genome tells"

    # DNA read from its cache: the genome is not read, not in the fingerprint
    cached_config = config_with()
    cached_config["model"] = {**cached_config["model"], "cached_modalities": ["dna"]}
    cached = run_fingerprint(cached_config, raw, path, genome_fasta=genome)
    assert "genome" not in cached
    genome.write_text(fasta.read_text())
    assert run_fingerprint(cached_config, raw, path, genome_fasta=genome) == cached
    assert "genome" not in run_fingerprint(config_with(), EXPERIMENT, path, genome_fasta=genome)


def test_checkpoints_recorded_without_the_genome_are_set_aside(dataset, tmp_path):
    """Strict for records written before the genome was in them: a raw-DNA run cannot tell
    which genome they were trained on, so they are kept in previous/ and the run trains
    afresh (docs/rerun.md)."""
    path, fasta = dataset
    raw = {"modalities": ["dna"]}
    fingerprint = run_fingerprint(config_with(), raw, path, genome_fasta=fasta)
    recorded = {k: v for k, v in fingerprint.items() if k != "genome"}
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / FINGERPRINT_FILE).write_text(json.dumps(recorded))
    (ckpt / "last.ckpt").write_bytes(checkpoint_bytes(1))
    prepare_checkpoints(tmp_path, fingerprint)
    kept = tmp_path / "previous" / fingerprint_hash(recorded)
    assert (kept / "last.ckpt").read_bytes() == checkpoint_bytes(1)
    assert resume_checkpoint(tmp_path) is None


def test_a_pretrained_encoder_read_raw_is_fingerprinted_by_its_download_record(dataset, tmp_path):
    """Weights re-downloaded under the same spec (a moved ``revision: main``) trained on
    from the old weights' checkpoints: the fingerprint now holds the download record's
    digest (what was fetched, not when), for an encoder read raw only."""
    path, _ = dataset
    weights = tmp_path / "esm2"
    weights.mkdir()
    record = {
        "encoder": "esm2",
        "urls": {"esm2_t6_8M_UR50D.pt": "https://example.org/esm2_t6_8M_UR50D.pt"},
        "revision": "esm2_t6_8M_UR50D",
        "sha256": {"esm2_t6_8M_UR50D.pt": "a" * 64},
        "files": ["esm2_t6_8M_UR50D.pt"],
        "downloaded_at": "2026-11-01T00:00:00Z",
    }
    (weights / "isoflow_source.json").write_text(json.dumps(record))
    config = config_with()
    config["encoders"]["esm2"] = {
        "source": "pretrained",
        "path": str(weights),
        "esm_model": "esm2_t6_8M_UR50D",
        "finetune_last": -1,
    }
    base = run_fingerprint(config, EXPERIMENT, path)
    assert set(base["weights"]) == {"esm2"}
    # downloaded again, the same files: the same fingerprint
    (weights / "isoflow_source.json").write_text(
        json.dumps({**record, "downloaded_at": "2026-11-27T00:00:00Z"})
    )
    assert run_fingerprint(config, EXPERIMENT, path) == base
    # other weights under the same spec
    (weights / "isoflow_source.json").write_text(
        json.dumps({**record, "sha256": {"esm2_t6_8M_UR50D.pt": "b" * 64}})
    )
    assert run_fingerprint(config, EXPERIMENT, path)["weights"] != base["weights"]
    # read from its cache: not in the fingerprint; a tiny encoder neither
    cached = copy.deepcopy(config)
    cached["model"] = {**cached["model"], "cached_modalities": ["protein"]}
    assert "weights" not in run_fingerprint(cached, EXPERIMENT, path)
    assert "weights" not in run_fingerprint(config_with(), EXPERIMENT, path)
    (weights / "isoflow_source.json").unlink()
    with pytest.raises(InputError, match="isoflow_source.json.*download_encoders"):
        run_fingerprint(config, EXPERIMENT, path)


@pytest.mark.slow
def test_a_raw_dna_run_trains_afresh_on_an_edited_genome(dataset, tmp_path):
    """The reviewer's case end to end: the same dataset bytes, one genome base changed;
    the rerun (Snakemake reruns train: the genome is newer) keeps the first checkpoints in
    previous/ and trains afresh instead of resuming the finished run on the new windows."""
    path, fasta = dataset
    genome = tmp_path / "genome.fa"
    genome.write_bytes(fasta.read_bytes())
    pysam.faidx(str(genome))
    raw = {"modalities": ["dna"]}
    config = config_with(max_epochs=1)
    run = tmp_path / "run"
    run_experiment(config, raw, path, run, genome)
    first = snapshot(run / "checkpoints")
    first_hash = fingerprint_hash(json.loads((run / "checkpoints" / FINGERPRINT_FILE).read_text()))

    lines = genome.read_text().splitlines()
    lines[-1] = ("T" if lines[-1][0] != "T" else "A") + lines[-1][1:]
    genome.write_text("\n".join(lines) + "\n")
    pysam.faidx(str(genome))
    for name in ("metrics.json", "history.csv", "predictions.parquet"):
        (run / name).unlink()  # as Snakemake removes a job's outputs before it reruns
    run_experiment(config, raw, path, run, genome)
    assert snapshot(run / "previous" / first_hash) == first
    recorded = json.loads((run / "checkpoints" / FINGERPRINT_FILE).read_text())
    assert recorded["genome"]["sha256"] == hashlib.sha256(genome.read_bytes()).hexdigest()


def test_ranks_of_one_srun_step_resume_from_rank_0s_decision(tmp_path, monkeypatch):
    """Under srun every task runs the bookkeeping before fit, with no process group yet.
    Rank 0 moved checkpoints of other settings aside while rank 1 looked for one to resume:
    rank 1 resumed last.ckpt, rank 0 started afresh. Now rank 1 waits for rank 0's answer."""
    fake_run(tmp_path, {"lr": 1})
    assert launch_key() is None  # one process: no agreement needed
    for name, value in [("SLURM_NTASKS", "2"), ("SLURM_PROCID", "1"), ("SLURM_JOB_ID", "77")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    key = launch_key()
    assert key == "77.0.0"
    (tmp_path / ".resume-76.0.0.json").write_text('{"resume": "stale.ckpt"}')  # an earlier job

    # on its own rank 1 would resume a checkpoint of the old settings
    assert resume_checkpoint(tmp_path, set_aside=False) is not None
    started = threading.Event()

    def decide():
        started.wait(5)
        time.sleep(0.3)  # rank 1 is already waiting
        prepare_checkpoints(tmp_path, {"lr": 2})  # new settings: everything moves aside
        return resume_checkpoint(tmp_path, set_aside=True)

    answers = {}

    def rank(r):
        if r == 1:
            started.set()
        answers[r] = agreed_resume(tmp_path, decide, r, key, timeout_s=10, poll_s=0.05)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert answers == {0: None, 1: None}  # both start afresh
    assert not (tmp_path / ".resume-76.0.0.json").exists()  # rank 0 removed the stale answer
    assert json.loads((tmp_path / ".resume-77.0.0.json").read_text()) == {"resume": None}

    # a resume: both get rank 0's path
    def resumed():
        return resume_checkpoint(tmp_path, set_aside=True)

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    key = launch_key()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(checkpoint_bytes(5))
    assert agreed_resume(tmp_path, resumed, 0, key) == tmp_path / "checkpoints" / "last.ckpt"
    assert agreed_resume(tmp_path, resumed, 1, key) == tmp_path / "checkpoints" / "last.ckpt"

    # rank 0 never answers: a one-line error naming the file, not a hang
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    with pytest.raises(InputError, match=r"\.resume-77\.0\.2\.json: rank 1 waited 0 s"):
        agreed_resume(tmp_path, resumed, 1, launch_key(), timeout_s=0.2, poll_s=0.05)


def test_a_rank_without_a_launch_key_looks_for_itself_and_moves_nothing(tmp_path, monkeypatch):
    """Without a launch key (one process, or Lightning's launcher starting ranks after rank
    0's bookkeeping) only rank 0 runs ``decide``, which moves files; another rank reads what
    is there. And a SLURM step is one only when srun gave this task a rank (SLURM_PROCID)."""
    fake_run(tmp_path, {"lr": 1})
    calls = []

    def decide():
        calls.append("decide")
        return None

    found = agreed_resume(tmp_path, decide, 1, None)
    assert calls == [] and found == resume_checkpoint(tmp_path, set_aside=False) is not None
    assert agreed_resume(tmp_path, decide, 0, None) is None and calls == ["decide"]
    assert not list(tmp_path.glob(".resume-*.json"))  # no decision file without a key

    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert launch_key() is None  # no task rank: not a task of an srun step
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert launch_key() is None  # one task: nothing to agree on
