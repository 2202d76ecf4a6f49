# Rules of this stage: see DESIGN.md.


rule annotation:
    """One row per transcript from the GTF/GFF3 (isoflow.annotation.read_annotation)."""
    input:
        annotation_file(),
    output:
        "results/annotation/transcripts.parquet",
    log:
        "logs/annotation/annotation.log",
    benchmark:
        "benchmarks/annotation/annotation.tsv"
    conda:
        "../envs/isoflow.yaml"
    resources:
        mem_mb=6000,
    params:
        # gene_types, exclude_contigs: only when set (isoflow.workflow.set_options)
        **set_options(config, "annotation", ["gene_types", "exclude_contigs"]),
        contig_aliases=sorted_keys(config["contig_aliases"]),
        transcript_types=config["annotation"]["transcript_types"],
        par_y=config["annotation"]["par_y"],
    script:
        "../scripts/annotation.py"
