# Rules of this stage: see DESIGN.md.
#
# Resuming: Snakemake deletes the declared outputs of a failed job, so the checkpoints are
# not an output: results/runs/{run}/checkpoints/ is passed as a param and survives a
# failure, a kill or a SLURM requeue; the rerun continues from its last.ckpt. Checkpoints
# written for other settings or another dataset (checkpoints/fingerprint.json differs) are
# never deleted: isoflow.checkpoints moves them to results/runs/{run}/previous/<hash>/ and
# moves them back if those settings come again. Move checkpoints/ away to retrain from scratch.
# Snakemake deletes the log: file before each attempt (a requeue, a retry), so each attempt also
# appends its log to checkpoints/train.log, whose earlier attempts a successful job copies to the
# end of its log (isoflow.attempts).
from functools import partial

from isoflow.workflow import (
    grouped_train_inputs,
    grouped_train_runs,
    rule_experiment,
    rule_inputs,
    rule_settings,
    run_pattern,
    run_settings,
    train_cpus,
    train_runtime_min,
)

# resources.train_jobs picks one of two definitions of the rule: `per_run` (default) is one
# job per run, side by side on as many GPUs or cores as there are; `one` trains every run in
# one job, one after another (isoflow.train.run_experiments), so torch and Lightning are
# imported once rather than once per run: on the CPU demo that import costs more than a run.
# Both write the same files (byte-identical: tests/unit/test_train.py); Snakemake cannot
# make a rule's outputs depend on a wildcard's value, so there is no grouping in between.


if config["resources"]["train_jobs"] == "per_run":

    rule train:
        """Train one experiment (isoflow.train), resuming from its checkpoints when present;
        test metrics, predictions and per-epoch history from the best checkpoint."""
        input:
            unpack(
                partial(
                    rule_inputs,
                    config=config,
                    experiments=EXPERIMENTS,
                    dataset=f"results/dataset/{DATASET}.parquet",
                    genome=genome_fasta(),
                )
            ),
        output:
            metrics="results/runs/{run}/metrics.json",
            predictions="results/runs/{run}/predictions.parquet",
            history="results/runs/{run}/history.csv",
        log:
            "logs/train/{run}.log",
        benchmark:
            "benchmarks/train/{run}.tsv"
        wildcard_constraints:
            run=run_pattern(EXPERIMENTS),
        conda:
            "../envs/isoflow.yaml"
        # torch's threads (scripts/train.py); the CPUs SLURM reserves add the loader's
        threads: config["resources"]["model_threads"]
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=config["resources"]["train_mem_mb"],
            runtime=config["resources"]["train_runtime_min"],
            cpus_per_task=partial(train_cpus, config=config),
        params:
            run_dir="results/runs/{run}",
            checkpoints="results/runs/{run}/checkpoints",
            experiment=partial(rule_experiment, experiments=EXPERIMENTS),
            # the encoders this run reads, not every configured one
            settings=partial(run_settings, config=config, experiments=EXPERIMENTS),
        script:
            "../scripts/train.py"

else:

    rule train:
        """Train every run (isoflow.train.run_experiments), each as the per-run rule
        would, resuming from its checkpoints when present."""
        input:
            **grouped_train_inputs(
                config, EXPERIMENTS, f"results/dataset/{DATASET}.parquet", genome_fasta()
            ),
        output:
            metrics=expand("results/runs/{run}/metrics.json", run=list(EXPERIMENTS)),
            predictions=expand("results/runs/{run}/predictions.parquet", run=list(EXPERIMENTS)),
            history=expand("results/runs/{run}/history.csv", run=list(EXPERIMENTS)),
        log:
            expand("logs/train/{run}.log", run=list(EXPERIMENTS)),
        benchmark:
            "benchmarks/train/all_runs.tsv"
        conda:
            "../envs/isoflow.yaml"
        threads: max(2, config["resources"]["train_processes"])
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=config["resources"]["train_mem_mb"],
            runtime=train_runtime_min(config, len(EXPERIMENTS)),
            cpus_per_task=partial(
                train_cpus,
                config=config,
                runs=len(EXPERIMENTS),
                processes=config["resources"]["train_processes"],
            ),
        params:
            runs=grouped_train_runs(
                config, EXPERIMENTS, f"results/dataset/{DATASET}.parquet", genome_fasta()
            ),
            processes=config["resources"]["train_processes"],
            # the encoders any of the runs reads
            settings=rule_settings(config, EXPERIMENTS.values()),
        script:
            "../scripts/train.py"
