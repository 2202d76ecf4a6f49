# Rules of this stage: see DESIGN.md.
#
# The checkpoint is not an input (it is no declared output of train, so that a failed or
# requeued job keeps it): export_bundle finds the best checkpoint of exactly the settings and
# data train used (its fingerprint, in checkpoints/ or previous/<hash>/), and checks that the
# bundle re-predicts the run's test transcripts before it is put in place.
from functools import partial

from isoflow.workflow import (
    bundle_mem_mb,
    bundle_runs,
    bundle_settings,
    export_all_inputs,
    export_inputs,
    export_mem_mb,
    experiment_params,
    rule_experiment,
    run_bundle_settings,
    run_pattern,
)


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
    benchmark:
        "benchmarks/export_model/{run}.tsv"
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
        # the encoders the bundle loads (isoflow.workflow.bundle_mem_mb)
        mem_mb=partial(export_mem_mb, config=config, experiments=EXPERIMENTS),
    params:
        run_dir="results/runs/{run}",
        experiment=partial(rule_experiment, experiments=EXPERIMENTS),
        settings=partial(run_bundle_settings, config=config, experiments=EXPERIMENTS),
    script:
        "../scripts/export_model.py"


# resources.train_jobs: one (the demo) also writes every bundle the workflow asks for in one
# job: an export imports torch and the encoder libraries (~10 CPU-s) for ~2.5 CPU-s of its
# own work (docs/benchmarks.md, "The demo's post-training jobs"). Rule export_model still
# writes any other run's bundle asked for by name.
BUNDLE_RUNS = bundle_runs(config, EXPERIMENTS)

if config["resources"]["train_jobs"] == "one" and len(BUNDLE_RUNS) > 1:
    EXPORT_FILES, EXPORT_INPUTS = export_all_inputs(
        config,
        EXPERIMENTS,
        BUNDLE_RUNS,
        f"results/dataset/{DATASET}.parquet",
        genome_fasta(),
    )

    ruleorder: export_models > export_model

    rule export_models:
        """Every bundle the workflow asks for (isoflow.workflow.bundle_runs), one after
        another in one job, each as rule export_model writes it."""
        input:
            EXPORT_FILES,
        output:
            [directory(f"results/models/{run}") for run in BUNDLE_RUNS],
        log:
            "logs/export_model/all_models.log",
        benchmark:
            "benchmarks/export_model/all_models.tsv"
        # see rule export_model
        priority: 2
        conda:
            "../envs/isoflow.yaml"
        threads: config["resources"]["model_threads"]
        resources:
            gpu=config["resources"]["gpu"],
            # one bundle at a time: the largest counts
            mem_mb=bundle_mem_mb(config, [EXPERIMENTS[run] for run in BUNDLE_RUNS]),
        params:
            runs=BUNDLE_RUNS,
            inputs=EXPORT_INPUTS,
            experiments=experiment_params({run: EXPERIMENTS[run] for run in BUNDLE_RUNS}),
            settings=bundle_settings(config, [EXPERIMENTS[run] for run in BUNDLE_RUNS]),
        script:
            "../scripts/export_models.py"
