# Rules of this stage: see DESIGN.md.


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
        # cell_lines: only when set (isoflow.workflow.set_options)
        **set_options(config, "gtex", ["cell_lines"]),
        tissues=lookup(dpath="tissues/{tissue_set}", within=config),
        min_samples=config["gtex"]["min_samples"],
        overlap_warn_below=config["gtex"]["overlap_warn_below"],
        overlap_fail_below=config["gtex"]["overlap_fail_below"],
    script:
        "../scripts/targets.py"
