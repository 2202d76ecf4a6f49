# Rules of this stage: see DESIGN.md.
import re


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
