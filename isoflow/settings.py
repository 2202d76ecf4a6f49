"""The ``model``, ``train``, ``rna``, ``protein`` config sections and the encoder specs with
their defaults, and what an experiment reads through them (which encoder per modality,
which modalities come from the cache).

The one home of these defaults (DESIGN.md "Config keys"): the library is called outside
Snakemake too. Light on purpose: the workflow reads it at parse time (``isoflow.workflow``),
so it imports nothing beyond the config layer; torch loads in the jobs (``isoflow.train``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from isoflow.config import SCHEMA, check_config
from isoflow.errors import InputError

MODEL_DEFAULTS: dict[str, Any] = {
    "d_model": 64,
    "depth": 1,
    "heads": 4,
    "dropout": 0.0,
    "n_latents": 8,
    "rna_encoder": "nucleotide_transformer",
    "protein_encoder": "esm2",
    "cached_modalities": [],  # modalities read from results/embeddings/ (frozen encoders)
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "max_epochs": 20,
    "batch_size": 16,
    "eval_batch_size": None,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "patience": 5,
    "num_workers": 0,
    # > 0 with num_workers 0: batches made that many ahead in a background thread
    # (isoflow.loader.PrefetchDataLoader); the same batches, so not in a run's fingerprint
    "prefetch_batches": 0,
    "accelerator": "auto",
    "devices": 1,
    "strategy": "auto",
    "precision": None,  # None: bf16-mixed on a GPU, else 32-true
    "deterministic": True,  # or False, or "warn" (passed to Lightning as is)
    # Added after runs were trained: in a run's fingerprint only when set away from these
    # defaults (isoflow.checkpoints.TRAIN_KEYS_IF_SET), which keep the earlier behaviour.
    "grad_clip": None,  # max total gradient norm (L2 over all parameters); None: no clipping
    "warmup_steps": 0,  # linear LR warmup: optimizer steps, or a fraction (0, 1) of all steps
    "schedule": "constant",  # LR after warmup: constant, or cosine down to 0 at the last step
    "decay_norms_biases": True,  # False: no weight decay on biases and normalisation weights
    # True: the model (encoders read raw, aggregator, head) through torch.compile for training
    # (isoflow.train.compile_model): 1.6-1.9x the fine-tuning steps of one fixed shape on an
    # H200 (docs/model.md "Compiled training"); the stored weights' names are unchanged
    "compile": False,
    "progress_bar": True,
    "log_every_n_steps": 10,
    # In a SLURM job: stop at an epoch's end and requeue when the time left is less than
    # max(requeue_min_s, requeue_factor x the slowest epoch + two checkpoint writes)
    # (isoflow.lightning.time_to_requeue); not in a run's fingerprint, not in the params
    "requeue_factor": 1.5,
    "requeue_min_s": 300,
    # seconds between two squeue reads of the time left (counted down in between): a
    # read every epoch end of short epochs would load slurmctld for nothing
    "requeue_poll_s": 30,
}
# Every encoder spec (``encoders.<name>``), whatever its family; family-specific keys
# (max_len, truncate, use_tf_gamma, ...) have their defaults in the family's file.
ENCODER_DEFAULTS: dict[str, Any] = {
    "source": "tiny",  # or "pretrained": the weights in workflow.weights_dir(name, spec)
    "revision": "main",
    "hparams": {},
    "seed": 0,  # seeds a tiny encoder's random weights
    "finetune_last": 0,  # blocks trained with the model: 0 frozen, -1 all
    "pool_to": 64,  # embedding cache: token slots kept per sequence
    "embed_batch_size": 8,
}
RNA_DEFAULTS: dict[str, Any] = {"max_nt": 12282, "truncate": "keep_5prime"}
PROTEIN_DEFAULTS: dict[str, Any] = {"max_aa": 1022}


def _section(config: dict, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Config section ``name`` over its defaults, checked against config/schema.yaml first so
    a typo or a wrong type fails before anything is touched. An installed copy of the package
    has no schema beside it: the workflow, which validated the whole config at parse time, is
    then the check."""
    section = config.get(name) or {}
    if SCHEMA.is_file():
        check_config({name: section}, SCHEMA, "config", sections=(name,))
    return _filled(section, defaults)


def _filled(section: dict, defaults: dict[str, Any]) -> dict[str, Any]:
    """``section`` with each missing default added after its own keys (a copy), in the order
    Snakemake's ``validate`` fills a schema's defaults: rule params made from it keep their
    repr, so they do not trigger reruns."""
    return {**section, **{k: copy.deepcopy(v) for k, v in defaults.items() if k not in section}}


def model_config(config: dict) -> dict[str, Any]:
    model = _section(config, "model", MODEL_DEFAULTS)
    if model["d_model"] % model["heads"]:
        raise InputError(
            "config",
            "model.d_model",
            f"{model['d_model']} is not a multiple of model.heads ({model['heads']})",
        )
    return model


def train_config(config: dict) -> dict[str, Any]:
    return _section(config, "train", TRAIN_DEFAULTS)


def rna_config(config: dict) -> dict[str, Any]:
    """``rna``: how long a transcript the RNA encoder reads, and which end it keeps."""
    return _section(config, "rna", RNA_DEFAULTS)


def protein_config(config: dict) -> dict[str, Any]:
    """``protein``: how many residues the protein encoder reads (N-terminal part kept)."""
    return _section(config, "protein", PROTEIN_DEFAULTS)


def encoder_spec(config: dict, name: str) -> dict[str, Any]:
    """``encoders.<name>`` over ``ENCODER_DEFAULTS`` (an unconfigured name: the defaults)."""
    return with_encoder_defaults((config.get("encoders") or {}).get(name))


def with_encoder_defaults(spec: dict | None) -> dict[str, Any]:
    """An encoder spec with ``ENCODER_DEFAULTS`` under it (a copy: the default ``hparams``
    dict is never shared with a caller that fills it)."""
    return _filled(spec or {}, ENCODER_DEFAULTS)


def encoder_names(config: dict, experiment: dict) -> dict[str, str]:
    """Modality -> encoder name for the experiment's modalities."""
    model = model_config(config)
    names = {
        "dna": experiment["dna_encoder"],
        "rna": model["rna_encoder"],
        "protein": model["protein_encoder"],
    }
    return {m: names[m] for m in experiment["modalities"]}


# Model keys that only a run reading their modality uses.
MODEL_KEYS_OF_MODALITY = {"rna": "rna_encoder", "protein": "protein_encoder"}


def scoped_settings(settings: dict[str, Any], modalities: Iterable[str]) -> dict[str, Any]:
    """``settings`` (a dict with ``model``, ``rna`` and ``protein`` sections, filled) less
    what no run reading only ``modalities`` uses: the ``rna`` / ``protein`` section and the
    model's ``rna_encoder`` / ``protein_encoder`` without that modality, and
    ``model.cached_modalities`` limited to them. A DNA-only run's checkpoint fingerprint and
    train params then do not change when the RNA limits or the protein encoder do (which
    would retrain it for nothing). A copy; other sections are kept as they are."""
    modalities = set(modalities)
    scoped = dict(settings)
    for modality in MODEL_KEYS_OF_MODALITY:
        if modality not in modalities:
            scoped.pop(modality, None)
    model = scoped.get("model")
    if isinstance(model, dict):
        unused = {key for m, key in MODEL_KEYS_OF_MODALITY.items() if m not in modalities}
        model = {k: v for k, v in model.items() if k not in unused}
        if isinstance(model.get("cached_modalities"), list):
            model["cached_modalities"] = [m for m in model["cached_modalities"] if m in modalities]
        scoped["model"] = model
    return scoped


def cached_modalities(config: dict, experiment: dict) -> list[str]:
    """The experiment's modalities read from the embedding cache (``model.cached_modalities``)."""
    cached = set(model_config(config).get("cached_modalities") or [])
    return [m for m in experiment["modalities"] if m in cached]
