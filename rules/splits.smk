# Rules of this stage: see DESIGN.md.

from isoflow.workflow import split_settings


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
        scheme="gene|locus|chrom",
    conda:
        "../envs/isoflow.yaml"
    params:
        # config["split"], less the keys of another scheme (isoflow.workflow.split_settings)
        split=lambda wildcards: split_settings(config, wildcards.scheme),
    script:
        "../scripts/splits.py"
