# Rules of this stage: see DESIGN.md.
#
# Resuming: Snakemake deletes the declared outputs of a failed job, so the checkpoints are
# not an output: results/runs/{run}/checkpoints/ is passed as a param and survives a
# failure, a kill or a SLURM requeue; the rerun continues from its last.ckpt. Checkpoints
# written for other settings or another dataset file are discarded by isoflow.train (a
# fingerprint.json beside them). Delete the folder to retrain from scratch.
import re

from isoflow.train import train_inputs


def train_run_pattern():
    """Only configured run names match {run} (an impossible pattern when there are none)."""
    return "|".join(re.escape(run) for run in EXPERIMENTS) or "(?!)"


def train_run_inputs(wildcards):
    return train_inputs(
        config,
        EXPERIMENTS[wildcards.run],
        f"results/dataset/{DATASET}.parquet",
        genome_fasta(),
    )


def train_experiment(wildcards):
    return EXPERIMENTS[wildcards.run]


def train_settings():
    """The config sections that shape a training run."""
    return {k: config.get(k, {}) for k in ("model", "train", "encoders", "rna", "protein")}


rule train:
    """Train one experiment (isoflow.train), resuming from its checkpoints when present;
    test metrics, predictions and per-epoch history from the best checkpoint."""
    input:
        unpack(train_run_inputs),
    output:
        metrics="results/runs/{run}/metrics.json",
        predictions="results/runs/{run}/predictions.parquet",
        history="results/runs/{run}/history.csv",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=train_run_pattern(),
    conda:
        "../envs/isoflow.yaml"
    threads: 2
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"].get("train_mem_mb", 16000),
        runtime=config["resources"].get("train_runtime_min", 1440),
    params:
        run_dir="results/runs/{run}",
        checkpoints="results/runs/{run}/checkpoints",
        experiment=train_experiment,
        settings=train_settings(),
    script:
        "../scripts/train.py"
