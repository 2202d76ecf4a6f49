# Rules of this stage: see DESIGN.md.
#
# Resuming: Snakemake deletes the declared outputs of a failed job, so the checkpoints are
# not an output: results/runs/{run}/checkpoints/ is passed as a param and survives a
# failure, a kill or a SLURM requeue; the rerun continues from its last.ckpt. Checkpoints
# written for other settings or another dataset (checkpoints/fingerprint.json differs) are
# never deleted: isoflow.checkpoints moves them to results/runs/{run}/previous/<hash>/ and
# moves them back if those settings come again. Move checkpoints/ away to retrain from scratch.
from functools import partial

from isoflow.workflow import rule_experiment, rule_inputs, rule_settings, run_pattern


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
    threads: 2
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime_min"],
    params:
        run_dir="results/runs/{run}",
        checkpoints="results/runs/{run}/checkpoints",
        experiment=partial(rule_experiment, experiments=EXPERIMENTS),
        settings=rule_settings(config),
    script:
        "../scripts/train.py"
