"""Experiment expansion: one run per top-level seed unless an experiment sets its own."""

import pytest
import yaml
from snakemake.utils import validate

from helpers.experiments import ABLATIONS, ALL3
from helpers.paths import REPO
from isoflow.config import check_config
from isoflow.errors import InputError
from isoflow.experiments import ablation_groups, expand_experiments, run_name, setting_name

SCHEMA = REPO / "config" / "schema.yaml"


def test_each_experiment_runs_once_per_seed_in_config_order():
    runs = expand_experiments(
        {"seeds": [0, 1, 2], "experiments": [{"modalities": ["rna"]}, {"modalities": ["dna"]}]}
    )
    assert list(runs) == [
        "rna_enformer_cross_attention_s0",
        "rna_enformer_cross_attention_s1",
        "rna_enformer_cross_attention_s2",
        "dna_enformer_cross_attention_s0",
        "dna_enformer_cross_attention_s1",
        "dna_enformer_cross_attention_s2",
    ]
    assert [exp["seed"] for exp in runs.values()] == [0, 1, 2, 0, 1, 2]


def test_without_seeds_each_experiment_is_one_run_with_seed_0():
    runs = expand_experiments({"experiments": [{"modalities": ALL3, "fraction": 0.25}]})
    assert list(runs) == ["dna+rna+protein_enformer_cross_attention_s0_f0.25"]
    assert runs["dna+rna+protein_enformer_cross_attention_s0_f0.25"]["seed"] == 0


def test_an_experiment_with_its_own_seed_is_one_run_with_that_seed():
    runs = expand_experiments(
        {
            "seeds": [0, 1, 2],
            "experiments": [{"modalities": ["dna"], "seed": 7}, {"modalities": ["rna"]}],
        }
    )
    assert [name for name in runs if name.startswith("dna_")] == ["dna_enformer_cross_attention_s7"]
    assert len(runs) == 4


@pytest.mark.parametrize(
    "config",
    [
        {
            "seeds": [0, 1],
            "experiments": [{"modalities": ["dna"]}, {"modalities": ["dna"], "seed": 1}],
        },
        {"experiments": [{"modalities": ["dna"], "seed": 0}, {"modalities": ["dna"]}]},
    ],
    ids=["seed list meets explicit seed", "explicit seed meets default seed"],
)
def test_duplicate_run_names_are_one_line_naming_the_entry(config):
    with pytest.raises(InputError) as err:
        expand_experiments(config)
    message = str(err.value)
    assert message.startswith(
        "config:experiments[1]: duplicate run 'dna_enformer_cross_attention_s"
    )
    assert "\n" not in message


def test_an_empty_seed_list_is_refused_by_the_schema_and_by_the_expansion():
    config = {"seeds": [], "experiments": [{"modalities": ["dna"]}]}
    with pytest.raises(InputError, match=r"^config:seeds: \[\] should be non-empty"):
        check_config(config, SCHEMA)
    with pytest.raises(InputError, match=r"^config:seeds: empty list"):
        expand_experiments(config)


def test_schema_defaults_leave_the_seed_unset_so_the_seed_list_applies():
    """Snakemake's validate fills schema defaults into every experiment: a default seed
    there would make every experiment look as if it had set its own."""
    config = {"seeds": [3, 4], "experiments": [{"modalities": ["dna"]}]}
    validate(config, str(SCHEMA))
    assert list(expand_experiments(config)) == [
        "dna_enformer_cross_attention_s3",
        "dna_enformer_cross_attention_s4",
    ]


def load(*names: str) -> dict:
    """Config files merged as Snakemake merges several --configfile (top-level keys)."""
    config: dict = {}
    for name in names:
        config.update(yaml.safe_load((REPO / "config" / name).read_text()))
    validate(config, str(SCHEMA))
    return config


def test_demo_trains_every_experiment_on_three_seeds_and_keeps_its_shuffled_runs():
    runs = expand_experiments(load("demo.yaml"))
    assert len(runs) == 7 * 3  # six settings and the pooling ablation's positional one
    positional = [name for name in runs if name.endswith("_positional")]
    assert positional == [
        f"dna+rna+protein_enformer_cross_attention_s{s}_positional" for s in range(3)
    ]
    shuffled = [name for name in runs if name.endswith("_shuffled")]
    assert shuffled == [f"dna+rna+protein_enformer_cross_attention_s{s}_shuffled" for s in range(3)]
    assert {exp["seed"] for exp in runs.values()} == {0, 1, 2}


def test_ablation_grid_runs_three_seeds_per_row_and_the_full_run_one():
    overlay = yaml.safe_load((REPO / "config" / "ablations.yaml").read_text())
    runs = expand_experiments(load("config.yaml", "ablations.yaml"))
    assert len(runs) == 3 * len(overlay["experiments"])
    assert list(expand_experiments(load("config.yaml"))) == [
        "dna+rna+protein_enformer_cross_attention_s0_positional"
    ]


# --- runs grouped by setting --------------------------------------------------------


def test_ablation_groups_vary_one_factor_and_pool_seeds():
    experiments = expand_experiments(ABLATIONS)
    modalities = ablation_groups(experiments, "modalities")
    assert len(modalities) == 1
    levels = modalities[0]["levels"]
    assert set(levels) == {"dna+rna+protein", "rna+protein", "dna"}
    assert levels["dna+rna+protein"] == [
        "dna+rna+protein_enformer_cross_attention_s0",
        "dna+rna+protein_enformer_cross_attention_s1",
    ]
    aggregator = ablation_groups(experiments, "aggregator")
    assert [set(g["levels"]) for g in aggregator] == [{"cross_attention", "concat"}]
    encoder = ablation_groups(experiments, "dna_encoder")
    assert [set(g["levels"]) for g in encoder] == [{"enformer", "borzoi"}]
    # rna+protein runs carry dna_encoder=enformer but use no DNA: not in the encoder ablation.
    assert all(
        "rna+protein_enformer_cross_attention_s0" not in runs
        for g in encoder
        for runs in g["levels"].values()
    )
    scaling = ablation_groups(experiments, "fraction")
    assert [sorted(g["levels"]) for g in scaling] == [["0.25", "1"]]
    assert ablation_groups({"only": experiments[next(iter(experiments))]}, "aggregator") == []
    with pytest.raises(ValueError, match="unknown ablation factor"):
        ablation_groups(experiments, "seed")


def test_setting_name_drops_only_the_seed():
    assert setting_name("dna_enformer_concat_s12_f0.5_shuffled") == (
        "dna_enformer_concat_f0.5_shuffled"
    )
    assert setting_name("rna_nt_dna_cross_attention_s0") == "rna_nt_dna_cross_attention"


def test_run_names_follow_the_design_contract():
    assert (
        run_name({"modalities": ["protein", "dna", "rna"]})
        == "dna+rna+protein_enformer_cross_attention_s0"
    )
    assert (
        run_name({"modalities": ["rna"], "aggregator": "concat", "seed": 2, "fraction": 0.25})
        == "rna_enformer_concat_s2_f0.25"
    )
    assert run_name({"modalities": ["dna"], "shuffle_targets": True}).endswith("_shuffled")
    with pytest.raises(ValueError, match="unknown modalities"):
        run_name({"modalities": ["atac"]})


def test_duplicate_experiments_are_a_config_error():
    with pytest.raises(ValueError, match=r"experiments\[1\]: duplicate run"):
        expand_experiments({"experiments": [{"modalities": ["dna"]}, {"modalities": ["dna"]}]})
    runs = expand_experiments({"experiments": [{"modalities": ["rna", "dna"]}]})
    assert runs["dna+rna_enformer_cross_attention_s0"]["modalities"] == ["dna", "rna"]


def test_pooling_reaches_names_and_experiments_only_when_positional():
    from isoflow.experiments import ablation_groups, run_pooling

    entries = [
        {"modalities": ["dna", "rna"]},
        {"modalities": ["dna", "rna"], "pooling": "positional"},
    ]
    runs = expand_experiments({"experiments": entries, "seeds": [0]})
    assert list(runs) == [
        "dna+rna_enformer_cross_attention_s0",
        "dna+rna_enformer_cross_attention_s0_positional",
    ]
    first, second = runs.values()
    assert "pooling" not in first  # an adaptive run's experiment (and fingerprint) as before
    assert second["pooling"] == "positional" and run_pooling(first) == "adaptive"
    (group,) = ablation_groups(runs, "pooling")
    assert group["levels"] == {
        "adaptive": ["dna+rna_enformer_cross_attention_s0"],
        "positional": ["dna+rna_enformer_cross_attention_s0_positional"],
    }
    # embed.pooling: the default of runs that name none; an explicit adaptive overrides it
    config = {"experiments": [entries[0], {**entries[0], "pooling": "adaptive", "seed": 1}]}
    config["embed"] = {"pooling": "positional"}
    runs = expand_experiments(config)
    assert list(runs) == [
        "dna+rna_enformer_cross_attention_s0_positional",
        "dna+rna_enformer_cross_attention_s1",
    ]
    assert "pooling" not in runs["dna+rna_enformer_cross_attention_s1"]
