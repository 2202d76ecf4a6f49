# Rules of this stage: see DESIGN.md.


rule splits:
    """Train/valid/test per transcript, deterministic from IDs (isoflow.splits)."""
    input:
        "results/annotation/transcripts.parquet",
    output:
        "results/splits/{scheme}.tsv",
    log:
        "logs/splits/{scheme}.log",
    benchmark:
        "benchmarks/splits/{scheme}.tsv"
    wildcard_constraints:
        scheme="gene|chrom",
    conda:
        "../envs/isoflow.yaml"
    params:
        split=config["split"],
    script:
        "../scripts/splits.py"
