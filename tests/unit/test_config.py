"""config/schema.yaml and isoflow.config: every shipped config validates, a typo or a wrong
type is one line naming the key (and the nearest valid one), every key the training code
reads is typed, and each default has one home."""

from pathlib import Path

import pytest
import yaml

from helpers.configs import merged_configs
from helpers.paths import REPO
from isoflow.checkpoints import LATER_TRAIN_DEFAULTS
from isoflow.config import SCHEMA, check_config
from isoflow.errors import InputError
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.settings import (
    ENCODER_DEFAULTS,
    MODEL_DEFAULTS,
    PROTEIN_DEFAULTS,
    RNA_DEFAULTS,
    TRAIN_DEFAULTS,
    model_config,
    train_config,
)


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


merged = merged_configs


def properties(section: str) -> dict:
    return yaml.safe_load(SCHEMA.read_text())["properties"][section]["properties"]


@pytest.mark.parametrize(
    "files",
    [
        ["config/config.yaml"],
        ["config/demo.yaml"],
        ["config/config.yaml", "config/ablations.yaml"],
        ["config/config.yaml", "config/borzoi.yaml"],
        ["config/config.yaml", "config/demo.yaml", "tests/workflow/slurm/demo-fast.yaml"],
    ],
)
def test_shipped_configs_validate(files):
    check_config(merged(*files))


BAD_SETTINGS = [
    ({"train": {"max_epoch": 1}}, "train: unknown key 'max_epoch' (did you mean 'max_epochs'?)"),
    ({"demo": {"n_gene": 5}}, "demo: unknown key 'n_gene' (did you mean 'n_genes'?)"),
    ({"demo": {"samples_per_tissue": [3]}}, "demo.samples_per_tissue: [3] is too short"),
    ({"train": {"lr": "fast"}}, "train.lr: 'fast' is not of type 'number'"),
    ({"train": {"lr": 0}}, "train.lr: 0 is less than or equal to the minimum of 0"),
    (
        {"train": {"deterministic": "yes"}},
        "train.deterministic: 'yes' is not one of [True, False, 'warn']",
    ),
    (
        {"train": {"strategy": "dpp"}},
        "train.strategy: 'dpp' is not one of ['auto', 'ddp'] (did you mean 'ddp'?)",
    ),
    ({"train": {"devices": 0}}, "train.devices: 0 is less than the minimum of 1"),
    ({"train": {"precision": "bf16_mixed"}}, "train.precision: 'bf16_mixed' is not one of"),
    # Lightning's true half precisions cast the targets and the standardiser's statistics to
    # 16 bits (and crashed at the first step): refused before anything runs
    ({"train": {"precision": "bf16-true"}}, "train.precision: 'bf16-true' is not one of"),
    ({"train": {"precision": "16-true"}}, "train.precision: '16-true' is not one of"),
    ({"model": {"d_modle": 32}}, "model: unknown key 'd_modle' (did you mean 'd_model'?)"),
    ({"model": {"dropout": 1.0}}, "model.dropout: 1.0 is greater than or equal to the maximum"),
    ({"model": {"cached_modalities": ["atac"]}}, "model.cached_modalities[0]: 'atac' is not one"),
    (
        {"resources": {"train_mem": 8000}},
        "resources: unknown key 'train_mem' (did you mean 'train_mem_mb'?)",
    ),
    (
        {"encoders": {"esm2": {"pool": 8}}},
        "encoders.esm2: unknown key 'pool' (did you mean 'pool_to'?)",
    ),
    ({"traen": {}}, "<top level>: unknown key 'traen' (did you mean 'train'?)"),
    ({"train": {"zzz": 1}}, "train: unknown key 'zzz'"),
    (
        {"experiments": [{"modalities": ["dna"], "aggregator": "concatenate"}]},
        "experiments[0].aggregator: 'concatenate' is not one of",
    ),
    (
        {
            "experiments": [
                {"modalities": ["dna"]},
                {"modalities": ["dna"], "dna_encoder": "enformr"},
            ]
        },
        "experiments[1].dna_encoder: 'enformr' is not an entry of encoders nor an encoder class"
        " (did you mean 'enformer'?)",
    ),
    (
        {"encoders": {"enformer": {"attention": "sdpa"}}},
        "encoders.enformer.attention: is an ESM-2 setting (fair-esm's attention through SDPA);"
        " this encoder is enformer: remove it",
    ),
    (
        {"resources": {"embed_threads": {"esm": 1}}},
        "resources.embed_threads.esm: 'esm' is not an entry of encoders nor an encoder class"
        " (did you mean 'esm2'?)",
    ),
    (
        {"resources": {"embed_threads": {"esm2": 0}}},
        "resources.embed_threads.esm2: 0 is less than the minimum of 1",
    ),
    (
        {"encoders": {"esm2": {"compile": True}}},
        "encoders.esm2: unknown key 'compile' in an encoder spec (torch.compile of the frozen"
        " forward is embed.compile,",
    ),
    ({"embed": {"compile": "yes"}}, "embed.compile: 'yes' is not of type 'boolean'"),
    ({"train": {"compile": "inductor"}}, "train.compile: 'inductor' is not of type 'boolean'"),
    (
        {"train": {"prefetch_batches": -1}},
        "train.prefetch_batches: -1 is less than the minimum of 0",
    ),
    (
        {"encoders": {"esm2": {"class": "esm"}}},
        "encoders.esm2.class: 'esm' is not an encoder class (did you mean 'esm2'?)",
    ),
    (
        # a tissue listed twice: its first column would get no samples (gtex.aggregate_tpm
        # refuses it in the targets job; the schema stops it at parse)
        {"tissues": {"smts": ["Liver", "Brain", "Liver"]}},
        "tissues.smts: 'Liver' is listed twice; list each once",
    ),
    (  # it checked nothing: a table has no ITRs, only aav checks its cassettes
        {"constructs": {"aav_limit": 5000}},
        "constructs.aav_limit: 5000 is set, but constructs.aav is false and constructs.table "
        "(resources/demo/constructs.tsv) is a table, whose cassettes carry no ITR annotation: "
        "only aav checks them against the limit (a GenBank record with two ITRs is checked "
        "without it); set constructs.aav: true, or constructs.aav_limit: null",
    ),
    (  # each key within its range, the two together an empty one: every cassette failed
        {"design": {"constraints": {"gc_min": 0.9, "gc_max": 0.1}}},
        "design.constraints.gc_min: 0.9 is above gc_max 0.1: no GC content lies between them; "
        "set gc_min at most gc_max",
    ),
    (
        {"model": {"rna_encoder": "nucleotide_transformr"}},
        "model.rna_encoder: 'nucleotide_transformr' is not an entry of encoders nor an encoder"
        " class (did you mean 'nucleotide_transformer'?)",
    ),
    # an encoder of another modality in a slot passed the parse and the dry run, and failed
    # only in the train job (isoflow.loader)
    (
        {"experiments": [{"modalities": ["dna"], "dna_encoder": "esm2"}]},
        "experiments[0].dna_encoder: 'esm2' reads protein, not dna: name an encoder of dna "
        "(enformer, borzoi, nt_dna)",
    ),
    (
        {"model": {"rna_encoder": "enformer"}},
        "model.rna_encoder: 'enformer' reads dna, not rna: name an encoder of rna "
        "(nucleotide_transformer)",
    ),
    (
        {"model": {"protein_encoder": "nt_dna"}},
        "model.protein_encoder: 'nt_dna' reads dna, not protein: name an encoder of protein (esm2)",
    ),
    (  # a spec's modality: what the class reads by default no longer counts
        {"encoders": {"nucleotide_transformer": {"source": "tiny", "modality": "dna"}}},
        "model.rna_encoder: 'nucleotide_transformer' reads dna, not rna: name an encoder of rna",
    ),
    (  # the NT encoder's own check raised it only when an embed or train job started
        {"rna": {"max_nt": 12283}},
        "rna.max_nt: 12283 is not a multiple of 6: the Nucleotide Transformer "
        "(nucleotide_transformer) reads whole 6-mers; set 12282 or 12288",
    ),
]


@pytest.mark.parametrize(("patch", "expected"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_the_key(patch, expected):
    config = load("config/demo.yaml")
    for key, value in patch.items():
        config[key] = (
            {**config[key], **value} if isinstance(value, dict) and key in config else value
        )
    with pytest.raises(InputError) as err:
        check_config(config)
    message = str(err.value)
    assert message.startswith(f"config:{expected}"), message
    assert "\n" not in message
    if "zzz" in expected:
        assert "did you mean" not in message, message  # nothing close: no suggestion


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_true_half_precision_is_refused_before_training(precision):
    """run_experiment and the train rule read train through train_config: the value is refused
    there with one line, before a model is built (it crashed at the first step)."""
    with pytest.raises(InputError, match=f"train.precision: '{precision}' is not one of"):
        train_config({"train": {"precision": precision}})
    assert train_config({"train": {"precision": "bf16-mixed"}})["precision"] == "bf16-mixed"


@pytest.mark.parametrize("value", [True, False, "warn"])
def test_deterministic_takes_lightnings_three_values(value):
    check_config({"train": {"deterministic": value}}, sections=("train",))
    assert train_config({"train": {"deterministic": value}})["deterministic"] is value


@pytest.mark.parametrize(
    ("section", "defaults"),
    # train keys whose default isoflow.settings cannot hold (its code is hashed into the
    # embedding store's digest) keep it in isoflow.checkpoints.LATER_TRAIN_DEFAULTS
    [("model", MODEL_DEFAULTS), ("train", {**TRAIN_DEFAULTS, **LATER_TRAIN_DEFAULTS})],
)
def test_every_key_the_code_reads_is_typed_and_its_default_lives_in_python(section, defaults):
    schema = properties(section)
    assert set(schema) == set(defaults)
    assert all("default" not in schema[key] for key in schema), "a second home for a default"
    assert all(
        "type" in schema[key] or "enum" in schema[key] or "anyOf" in schema[key] for key in schema
    )
    check_config({section: defaults}, sections=(section,))  # the defaults themselves are valid


def test_experiment_defaults_live_in_python_only():
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    items = schema["experiments"]["items"]
    # pooling: from embed.pooling (its schema default) when unset, so not in DEFAULTS
    assert set(items["properties"]) == set(EXPERIMENT_DEFAULTS) | {"modalities", "pooling"}
    assert all("default" not in spec for spec in items["properties"].values())
    assert "default" not in schema["seeds"], "a second home for DEFAULT_SEEDS"
    assert all("default" not in spec for spec in items["properties"].values())


def test_resources_the_rules_read_have_schema_defaults():
    resources = properties("resources")
    rules = (REPO / "rules" / "train.smk").read_text() + (
        REPO / "rules" / "encoders.smk"
    ).read_text()
    for key in ("gpu", "train_mem_mb", "train_runtime_min"):
        assert "default" in resources[key]
        assert f'config["resources"]["{key}"]' in rules
    assert 'config["resources"].get(' not in rules, "a default beside the schema's"


def test_train_and_model_config_check_before_filling_defaults():
    assert train_config({})["max_epochs"] == TRAIN_DEFAULTS["max_epochs"]
    assert train_config({"train": {"lr": 0.5}})["lr"] == 0.5
    with pytest.raises(InputError, match=r"^config:train: unknown key 'max_epoch' \(did you mean"):
        train_config({"train": {"max_epoch": 1}})
    with pytest.raises(InputError, match=r"^config:train.lr: 'fast' is not of type 'number'$"):
        train_config({"train": {"lr": "fast"}})
    with pytest.raises(
        InputError, match=r"^config:model.d_model: 30 is not a multiple of model.heads \(4\)$"
    ):
        model_config({"model": {"d_model": 30, "heads": 4}})


def _schema_enums(node, path=()):
    """(key path without the schema's structural keys, enum) of every enum in the schema."""
    if isinstance(node, dict):
        if "enum" in node:
            yield tuple(p for p in path if p not in _STRUCTURAL), node["enum"]
        for key, value in node.items():
            yield from _schema_enums(value, (*path, key))
    elif isinstance(node, list):
        for value in node:
            yield from _schema_enums(value, path)


_STRUCTURAL = {"properties", "items", "additionalProperties", "anyOf"}


def test_schema_enums_spell_the_package_constants():
    """The schema cannot import Python: each list of names it validates is held to the one
    constant the code reads, so a name added in one place and not the other fails here
    (an encoder `class` is checked against the registry by check_config, not by an enum)."""
    from isoflow.alphabet import TRUNCATE_MODES
    from isoflow.baseline import MODELS
    from isoflow.experiments import MODALITIES
    from isoflow.model.aggregators import AGGREGATORS
    from isoflow.splits import SCHEMES

    owners = {
        ("rna", "truncate"): TRUNCATE_MODES,
        ("encoders", "truncate"): TRUNCATE_MODES,
        ("split", "scheme"): SCHEMES,
        ("encoders", "modality"): MODALITIES,
        ("model", "cached_modalities"): MODALITIES,
        ("experiments", "modalities"): MODALITIES,
        ("experiments", "aggregator"): AGGREGATORS,
        ("baseline", "model"): MODELS,
    }
    enums = dict(_schema_enums(yaml.safe_load(SCHEMA.read_text())))
    for path, constant in owners.items():
        assert tuple(enums[path]) == tuple(constant), path


def test_config_violations_name_the_key_on_one_line():
    schema = REPO / "config/schema.yaml"
    good = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    check_config(good, schema)
    check_config(yaml.safe_load((REPO / "config/config.yaml").read_text()), schema)
    cases = [
        ({"genome": {"sha256": "xyz"}}, "config:genome.sha256: 'xyz' does not match"),
        ({"tissue_set": "organ"}, "config:tissue_set: 'organ' is not one of"),
        ({"dna": {"window": "big"}}, "config:dna.window: 'big' is not of type 'integer'"),
        ({"experiments": [{"modalities": ["atac"]}]}, "config:experiments[0].modalities[0]:"),
        ({"genome": {"fasta_path": "x.fa"}}, "config:genome: unknown key 'fasta_path'"),
    ]
    for patch, expected in cases:
        bad = {**good, **patch}
        with pytest.raises(InputError) as err:
            check_config(bad, schema)
        assert str(err.value).startswith(expected), str(err.value)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("section", "defaults"), [("rna", RNA_DEFAULTS), ("protein", PROTEIN_DEFAULTS)]
)
def test_sequence_limit_defaults_live_in_python_only(section, defaults):
    schema = properties(section)
    assert set(defaults) <= set(schema)
    assert all("default" not in schema[key] for key in schema), "a second home for a default"
    check_config({section: defaults}, sections=(section,))


def test_encoder_spec_defaults_live_in_python_only():
    spec = yaml.safe_load(SCHEMA.read_text())["properties"]["encoders"]["additionalProperties"]
    keys = spec["properties"]
    assert set(ENCODER_DEFAULTS) <= set(keys)
    assert all("default" not in keys[key] for key in keys), "a second home for a default"
    check_config({"encoders": {"x": ENCODER_DEFAULTS}}, sections=("encoders",))


def _tf_gamma_config(window: int, source: str = "pretrained", dna_encoder: str = "enformer"):
    return {
        "dna": {"window": window},
        "encoders": {"enformer": {"source": source, "use_tf_gamma": True}},
        "experiments": [{"modalities": ["dna", "rna"], "dna_encoder": dna_encoder}],
        "seeds": [0],
    }


def test_use_tf_gamma_with_another_window_is_one_line_before_any_job():
    from isoflow.config import check_dna_encoder

    config = _tf_gamma_config(2048)
    with pytest.raises(InputError) as err:
        check_dna_encoder(config, "enformer")
    line = str(err.value)
    assert line.startswith("config:encoders.enformer.use_tf_gamma: true needs dna.window 196,608")
    assert "dna.window is 2,048" in line and "use_tf_gamma: false" in line
    # the second fix must not lead into a window too short for the published 896 bins
    assert "at least its target_length of 896 bins (114,688 bp or more)" in line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("window", "spec", "name", "expected"),
    [
        # the tf_gamma error's other fix, taken with too short a window: the job failed with
        # a bare "sequence length 512 is less than target length 896"
        (
            65_536,
            {"source": "pretrained", "use_tf_gamma": False},
            "enformer",
            "config:dna.window: 65,536 bp gives 512 bins of 128 bp, fewer than the 896 "
            "(target_length) the Enformer encoders.enformer returns: set dna.window to at "
            "least 114688 (or a smaller encoders.enformer.target_length)",
        ),
        (  # one bin short
            114_560,
            {"source": "pretrained", "use_tf_gamma": False},
            "enformer",
            "config:dna.window: 114,560 bp gives 895 bins of 128 bp, fewer than the 896 ",
        ),
        (
            200_000,
            {"source": "pretrained", "use_tf_gamma": False},
            "enformer",
            "config:dna.window: 200,000 bp is not a multiple of 128, which the pretrained "
            "Enformer encoders.enformer reads in 128-bp bins: set 199936 or 200064",
        ),
        (  # a tiny Enformer's bins: its hparams' target_length
            512,
            {"source": "tiny", "hparams": {"target_length": 8}},
            "enformer",
            "config:dna.window: 512 bp gives 4 bins of 128 bp, fewer than the 8",
        ),
        # the published Borzoi reads 524,288 bp only; the job failed on its first batch,
        # after the download and the load
        (
            196_608,
            {"source": "pretrained"},
            "borzoi",
            "config:dna.window: 196,608 bp, but the pretrained Borzoi encoders.borzoi reads "
            "exactly 524,288 bp windows (its relative-position table covers that input): set "
            "dna.window: 524288 in a separate results folder (config/borzoi.yaml)",
        ),
    ],
)
def test_a_dna_window_the_encoder_cannot_read_is_one_line_before_any_job(
    window, spec, name, expected
):
    from isoflow.config import check_dna_encoder

    config = {"dna": {"window": window}, "encoders": {name: spec}}
    with pytest.raises(InputError) as err:
        check_dna_encoder(config, name)
    assert str(err.value).startswith(expected), str(err.value)


@pytest.mark.parametrize(
    ("window", "source", "dna_encoder"),
    [
        (196_608, "pretrained", "enformer"),
        (2048, "tiny", "enformer"),
        (524_288, "pretrained", "borzoi"),
    ],
)
def test_use_tf_gamma_passes_where_no_forward_would_fail(window, source, dna_encoder):
    """The full window; a tiny Enformer (random weights, no TF gamma); an Enformer no
    experiment reads (the Borzoi overlay keeps the Enformer spec as it is)."""
    from isoflow.config import check_dna_encoder

    config = _tf_gamma_config(window, source, dna_encoder)
    config["encoders"]["borzoi"] = {"source": "pretrained"}
    check_dna_encoder(config, dna_encoder)


@pytest.mark.parametrize(
    ("window", "spec", "name"),
    [
        (114_688, {"source": "pretrained", "use_tf_gamma": False}, "enformer"),  # 896 bins
        (65_536, {"source": "pretrained", "target_length": 512}, "enformer"),
        (2048, {"source": "tiny", "hparams": {"target_length": 8}}, "enformer"),
        (2048, {"source": "tiny"}, "borzoi"),
        (2048, {}, "enformer"),  # source defaults to tiny: its own bins, not the published 896
        (131_072, {"source": "pretrained", "input_length": 131_072}, "borzoi"),
        (1000, {"source": "pretrained"}, "esm2"),
    ],
)
def test_a_dna_window_the_encoder_reads_passes(window, spec, name):
    from isoflow.config import check_dna_encoder

    check_dna_encoder({"dna": {"window": window}, "encoders": {name: spec}}, name)


def test_the_demo_sets_every_train_key_the_full_config_sets():
    # config/demo.yaml is read on top of config/config.yaml (the Snakefile's configfile), so
    # a train key only config.yaml sets reaches the demo's runs: gradient clipping, warmup and
    # the cosine schedule, added to config.yaml for the cluster, silently retrained the demo
    # with other results until demo.yaml set them back
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert sorted(set(full["train"]) - set(demo["train"])) == []


def test_the_demo_sets_every_embed_key_the_full_config_sets():
    # the same for the embed rules: config.yaml's embed.compile (for a GPU cluster) would
    # otherwise compile the demo's tiny encoders on its CPU for minutes and change its caches
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert sorted(set(full["embed"]) - set(demo["embed"])) == []
    assert demo["embed"]["compile"] is False and full["embed"]["compile"] is True


def test_the_schemas_demo_keys_are_the_demo_parameters():
    """demo_data passes every demo key but enabled and seed to isoflow.demo.make_demo as a
    DemoParams field: the schema lists exactly those (a typo is one line at parse, not a
    TypeError in the job), and no default (DemoParams holds them; a default filled into the
    config would change the rule's params and rebuild the demo data)."""
    import dataclasses

    from isoflow.demo import DemoParams

    schema = properties("demo")
    assert set(schema) == {"enabled", "seed"} | {f.name for f in dataclasses.fields(DemoParams)}
    assert [k for k, v in schema.items() if "default" in v] == ["enabled", "seed"]


def test_aav_limit_without_aav_is_refused_only_for_a_table(tmp_path):
    config = load("config/demo.yaml")
    for constructs in (
        {"aav_limit": 5000, "aav": True},  # every cassette checked against it
        {"aav_limit": 5000, "table": str(tmp_path / "maps.gb")},  # records with two ITRs
        {"aav_limit": 5000, "table": str(tmp_path)},  # a folder of GenBank maps
        {"aav_limit": None},
    ):
        check_config({**config, "constructs": {**config["constructs"], **constructs}})


def test_rna_max_nt_off_the_6mer_frame_is_fine_for_an_nt_with_its_own_max_len():
    config = load("config/demo.yaml")
    config["rna"] = {**config["rna"], "max_nt": 1000}
    config["encoders"]["nucleotide_transformer"]["max_len"] = 168
    check_config(config)  # the spec's budget, not rna.max_nt, sets what NT reads


def test_rna_max_nt_off_the_6mer_frame_is_refused_for_an_nt_entry_of_another_name():
    """The k-mer check follows an encoder entry's ``class``: an entry named otherwise (a
    second NT checkpoint) that is a Nucleotide Transformer reads 6-mers all the same."""
    config = load("config/demo.yaml")
    config["encoders"]["nt_500m"] = {
        **config["encoders"]["nucleotide_transformer"],
        "class": "nucleotide_transformer",
    }
    config["model"] = {**config["model"], "rna_encoder": "nt_500m"}
    config["rna"] = {**config["rna"], "max_nt": 1000}
    with pytest.raises(InputError, match=r"rna.max_nt: 1000 is not a multiple of 6: .*\(nt_500m\)"):
        check_config(config)
    config["rna"]["max_nt"] = 996
    check_config(config)


def test_two_overlays_setting_experiments_warn_that_only_the_last_is_planned(tmp_path):
    # Snakemake replaces lists when it merges config files: config.yaml ablations.yaml
    # borzoi.yaml silently planned Borzoi's 3 runs, the ablations' 45 gone
    from isoflow.config import replaced_experiments

    base, ablations, borzoi = (
        REPO / "config" / f for f in ("config.yaml", "ablations.yaml", "borzoi.yaml")
    )
    line = replaced_experiments([base, ablations, borzoi], REPO)
    n = len(load("config/ablations.yaml")["experiments"])
    assert line == (
        f"isoflow: warning: experiments is set by config/ablations.yaml ({n} entries) and "
        "config/borzoi.yaml (1 entry): Snakemake replaces lists when it merges config files, "
        "so only config/borzoi.yaml's are planned; put every experiment in one overlay to run "
        "them all"
    )
    # one overlay over the base replaces the base's list, as intended; another key alone
    # (seeds, dna) is no second list of runs
    assert replaced_experiments([base, ablations], REPO) is None
    assert replaced_experiments([base, base, borzoi], REPO) is None
    other = tmp_path / "window.yaml"
    other.write_text("dna: {window: 2048}\nseeds: [0]\n")
    assert replaced_experiments([base, ablations, other], REPO) is None


def test_a_copy_of_the_workflow_compares_overlays_with_its_own_config(tmp_path):
    # The base config was the one beside the installed package's schema: in a copy of the
    # workflow (the SLURM test's, a user's with isoflow pip-installed) the copy's own
    # config/config.yaml counted as an overlay, and every job warned that demo.yaml's
    # experiments were dropped
    import shutil

    from isoflow.config import replaced_experiments

    workflow = tmp_path / "workflow"
    shutil.copytree(REPO / "config", workflow / "config")
    config = workflow / "config"
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("experiments:\n  - {modalities: [protein]}\nseeds: [0]\n")
    assert replaced_experiments([config / "config.yaml", config / "demo.yaml"], workflow) is None
    # the true warning still fires, naming the files as the copy holds them
    line = replaced_experiments(
        [config / "config.yaml", config / "ablations.yaml", config / "borzoi.yaml"], workflow
    )
    assert line is not None and line.startswith(
        "isoflow: warning: experiments is set by config/ablations.yaml ("
    )
    assert replaced_experiments([config / "config.yaml", config / "demo.yaml", overlay], workflow)


@pytest.mark.parametrize("section", ["demo", "finetune", "design"])
def test_a_negative_seed_is_refused_by_the_schema(section):
    """demo.seed and finetune.seed -1 passed the schema and failed as numpy's bare ValueError
    (``np.random.default_rng``) once the job ran, finetune's after its bundle had loaded."""
    import jsonschema

    from isoflow.config import load_schema

    node = load_schema(str(SCHEMA))["properties"][section]["properties"]["seed"]
    jsonschema.validate(0, node)
    with pytest.raises(jsonschema.ValidationError, match="minimum of 0"):
        jsonschema.validate(-1, node)


NT_REPO = "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species"


def _nt_config(revision="main", **extra) -> dict:
    """config.yaml's two pretrained NT encoders sharing one weights folder."""
    spec = {"source": "pretrained", "path": "resources/models/nucleotide_transformer"}
    spec |= {"repo": NT_REPO, "revision": revision, **extra}
    return {"encoders": {"nucleotide_transformer": dict(spec), "nt_dna": dict(spec)}}


def _never(path):
    raise AssertionError(f"imported {path} again")


def test_nt_remote_code_that_cannot_import_is_one_line_at_parse(tmp_path, monkeypatch):
    """A downloaded NT-v2 snapshot whose modeling code imports a name this transformers
    release removed stops the parse in one line naming the folder and the fix, not the first
    embed job; a good snapshot passes; a snapshot of another revision than the spec's is left
    to its download's rerun; a folder not downloaded yet is left to rule download_encoders."""
    from helpers.encoders import NT_STALE_MODELING_FILE, record_nt_download, save_tiny_nt_snapshot
    from isoflow.config import check_nt_remote_code

    monkeypatch.chdir(tmp_path)
    check_nt_remote_code(_nt_config())  # not downloaded yet
    folder = Path("resources/models/nucleotide_transformer")
    save_tiny_nt_snapshot(folder)
    record_nt_download(folder, NT_REPO)
    check_nt_remote_code(_nt_config())  # good snapshot
    # imported once per code and versions: the next parse imports nothing (seconds otherwise)
    assert len(list((tmp_path / ".isoflow" / "remote_code").glob("*.json"))) == 1
    with monkeypatch.context() as patched:
        patched.setattr("isoflow.weights.check_remote_code", _never)
        check_nt_remote_code(_nt_config())
    (folder / "modeling_esm.py").write_text(NT_STALE_MODELING_FILE)
    record_nt_download(folder, NT_REPO)
    with pytest.raises(InputError) as caught:
        check_nt_remote_code(_nt_config())
    line = str(caught.value)
    assert line.startswith(
        f"{folder}:modeling code: the snapshot's remote code does not import with transformers "
    ), line
    assert "a_name_removed_long_ago" in line and "\n" not in line
    assert "set the encoder's `revision` to a commit after the Hub's import fix" in line
    assert "rerun rule download_encoders" in line
    check_nt_remote_code(_nt_config(revision="1234567"))  # another download is asked for
    tiny = {"encoders": {"nucleotide_transformer": {"source": "tiny"}}}
    check_nt_remote_code(tiny)  # a tiny NT reads no folder
    # only the folders a job that will run reads (`needed`, from the DAG), and an opt-out
    check_nt_remote_code(_nt_config(), needed=["resources/models/other"])
    monkeypatch.setenv("ISOFLOW_CHECK_REMOTE_CODE", "0")
    check_nt_remote_code(_nt_config())
    monkeypatch.delenv("ISOFLOW_CHECK_REMOTE_CODE")
    with pytest.raises(InputError):
        check_nt_remote_code(_nt_config(), needed=[f"./{folder}"])


def test_nt_remote_code_stamp_that_cannot_be_written_leaves_the_check_passed(tmp_path, monkeypatch):
    """The stamp only spares the next parse an import: a stamp folder the check cannot write
    (here a file in its place) must not fail a parse whose snapshot imported (a review found
    NotADirectoryError)."""
    from helpers.encoders import record_nt_download, save_tiny_nt_snapshot
    from isoflow.config import check_nt_remote_code

    monkeypatch.chdir(tmp_path)
    folder = Path("resources/models/nucleotide_transformer")
    save_tiny_nt_snapshot(folder)
    record_nt_download(folder, NT_REPO)
    (tmp_path / "not_a_folder").write_text("")
    check_nt_remote_code(_nt_config(), stamp_dir=tmp_path / "not_a_folder" / "remote_code")


def test_nt_remote_code_check_stops_on_a_broken_download_record(tmp_path, monkeypatch):
    """A weights folder whose isoflow_source.json an interrupted copy truncated: the check
    once the DAG is built stops in one line naming the record and the fix, neither a raw
    JSONDecodeError nor a skip (it skips a record of another download than the spec's)."""
    from helpers.encoders import save_tiny_nt_snapshot
    from isoflow.config import check_nt_remote_code
    from isoflow.weights import SOURCE_FILE

    monkeypatch.chdir(tmp_path)
    folder = Path("resources/models/nucleotide_transformer")
    save_tiny_nt_snapshot(folder)
    (folder / SOURCE_FILE).write_text('{"repo": "InstaDeepAI/nt", "revis')
    with monkeypatch.context() as patched:
        patched.setattr("isoflow.weights.check_remote_code", _never)
        with pytest.raises(InputError) as caught:
            check_nt_remote_code(_nt_config())
    line = str(caught.value)
    assert line.startswith(f"{folder / SOURCE_FILE}:1: not valid JSON"), line
    assert "rerun rule download_encoders" in line and "\n" not in line
