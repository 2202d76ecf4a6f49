# Rules of this stage: see DESIGN.md.
from isoflow.workflow import genome_index_outputs

# The genome's index files the workflow makes; none for a user's FASTA already indexed, which
# is then only read (isoflow.workflow.genome_index_outputs): no rule writes beside it.
GENOME_INDEX = genome_index_outputs(genome_fasta())


if GENOME_INDEX:

    rule genome_index:
        """samtools faidx index of the genome FASTA (isoflow.genome.index_fasta)."""
        input:
            genome_fasta(),
        output:
            # the .fai, and the .gzi of a bgzip FASTA (.gz)
            GENOME_INDEX,
        log:
            "logs/genome_index/genome_index.log",
        benchmark:
            "benchmarks/genome_index/genome_index.tsv"
        conda:
            "../envs/isoflow.yaml"
        script:
            "../scripts/genome_index.py"


rule sequences:
    """Spliced RNA, protein and TSS-centred DNA windows per transcript (isoflow.sequences).

    Fails first, before writing anything, when an annotation contig is not in the FASTA.
    """
    input:
        transcripts="results/annotation/transcripts.parquet",
        fasta=genome_fasta(),
        fai=genome_fasta() + ".fai",
    output:
        rna="results/sequences/rna.fa.gz",
        protein="results/sequences/protein.fa.gz",
        windows="results/sequences/dna_windows.bed",
    log:
        "logs/sequences/sequences.log",
    benchmark:
        "benchmarks/sequences/sequences.tsv"
    conda:
        "../envs/isoflow.yaml"
    resources:
        mem_mb=4000,
    params:
        # edge: only when set (isoflow.workflow.set_options)
        **set_options(config, "dna", ["edge"]),
        window=config["dna"]["window"],
        annotation=annotation_file(),
        contig_aliases=sorted_keys(config["contig_aliases"]),
    script:
        "../scripts/sequences.py"
