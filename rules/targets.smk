# Rules of this stage: see DESIGN.md (targets, splits, dataset).
import re


rule targets:
    """Per-tissue log1p(mean TPM) from the GTEx matrix, streamed (isoflow.gtex)."""
    input:
        tpm=gtex_tpm(),
        samples=gtex_samples(),
        transcripts="results/annotation/transcripts.parquet",
    output:
        targets="results/targets/{tissue_set}.parquet",
        stats="results/targets/{tissue_set}.stats.tsv",
    log:
        "logs/targets/{tissue_set}.log",
    benchmark:
        "benchmarks/targets/{tissue_set}.tsv"
    wildcard_constraints:
        tissue_set="smts|smtsd",
    conda:
        "../envs/isoflow.yaml"
    resources:
        mem_mb=4000,
    params:
        tissues=lookup(dpath="tissues/{tissue_set}", within=config),
        min_samples=config["gtex"]["min_samples"],
    script:
        "../scripts/targets.py"


rule splits:
    """Train/valid/test per transcript, deterministic from IDs (isoflow.splits)."""
    input:
        "results/annotation/transcripts.parquet",
    output:
        "results/splits/{scheme}.tsv",
    log:
        "logs/splits/{scheme}.log",
    wildcard_constraints:
        scheme="gene|chrom",
    conda:
        "../envs/isoflow.yaml"
    params:
        split=config["split"],
    script:
        "../scripts/splits.py"


rule dataset:
    """The table the model reads: annotation x sequences x windows x targets x splits."""
    input:
        transcripts="results/annotation/transcripts.parquet",
        rna="results/sequences/rna.fa.gz",
        protein="results/sequences/protein.fa.gz",
        windows="results/sequences/dna_windows.bed",
        targets=f"results/targets/{TISSUE_SET}.parquet",
        splits=f"results/splits/{SPLIT_SCHEME}.tsv",
        genome=genome_fasta(),
    output:
        "results/dataset/{name}.parquet",
    log:
        "logs/dataset/{name}.log",
    benchmark:
        "benchmarks/dataset/{name}.tsv"
    wildcard_constraints:
        name=re.escape(DATASET),
    conda:
        "../envs/isoflow.yaml"
    resources:
        mem_mb=6000,
    script:
        "../scripts/dataset.py"
