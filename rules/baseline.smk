# Rules of this stage: see DESIGN.md.


rule baseline:
    """Sequence-free baseline (isoflow.baseline): ridge on transcript and UTR/CDS lengths,
    exon count, biotype and GC, fitted on the train split; test metrics and predictions in
    a training run's formats, coefficients per tissue in features.tsv."""
    input:
        transcripts="results/annotation/transcripts.parquet",
        rna="results/sequences/rna.fa.gz",
        dataset=f"results/dataset/{DATASET}.parquet",
    output:
        metrics="results/baseline/metrics.json",
        predictions="results/baseline/predictions.parquet",
        features="results/baseline/features.tsv",
    log:
        "logs/baseline/baseline.log",
    benchmark:
        "benchmarks/baseline/baseline.tsv"
    conda:
        "../envs/isoflow.yaml"
    resources:
        mem_mb=8000,
    params:
        model=config["baseline"]["model"],
    script:
        "../scripts/baseline.py"
