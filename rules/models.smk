# Rules of this stage: see DESIGN.md.
#
# The checkpoint is not an input (it is no declared output of train, so that a failed or
# requeued job keeps it): export_bundle finds the best checkpoint of exactly the settings and
# data train used (its fingerprint, in checkpoints/ or previous/<hash>/), and checks that the
# bundle re-predicts the run's test transcripts before it is put in place.
from functools import partial

from isoflow.workflow import bundle_settings, export_inputs, rule_experiment, run_pattern


rule export_model:
    """A trained run as a self-contained model bundle (isoflow.bundle): weights, manifest,
    frozen tiny encoders, model card; isoflow.load_model reads it."""
    input:
        unpack(
            partial(
                export_inputs,
                config=config,
                experiments=EXPERIMENTS,
                dataset=f"results/dataset/{DATASET}.parquet",
                genome=genome_fasta(),
            )
        ),
    output:
        directory("results/models/{run}"),
    log:
        "logs/export_model/{run}.log",
    wildcard_constraints:
        run=run_pattern(EXPERIMENTS),
    # every construct job waits for the bundles: exported first, before explain (see rule
    # report_runs)
    priority: 2
    conda:
        "../envs/isoflow.yaml"
    threads: config["resources"]["model_threads"]
    resources:
        gpu=config["resources"]["gpu"],
    params:
        run_dir="results/runs/{run}",
        experiment=partial(rule_experiment, experiments=EXPERIMENTS),
        settings=bundle_settings(config),
    script:
        "../scripts/export_model.py"
