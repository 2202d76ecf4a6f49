# Downloads of the raw inputs (isoflow.download): streamed to a temporary file, sha256-checked
# against the config or, with no checksum configured, against resources/checksums.lock (the
# first download records it). The configured checksum is no param: an existing download is
# checked against it once the DAG is built (rules/common.smk), not fetched again. A rule exists only when the config sets no local path for that
# input: a user's file wins, and the demo config defines none of these rules.
# Downloads run on the host that runs snakemake (localrules): cluster compute nodes often
# have no internet access.


if not config["genome"]["fasta"] and config["genome"]["url"]:

    localrules:
        download_genome,

    rule download_genome:
        output:
            protected(genome_fasta()),
        log:
            f"logs/download/genome_{BUILD}.log",
        benchmark:
            f"benchmarks/download/genome_{BUILD}.tsv"
        conda:
            "../envs/isoflow.yaml"
        params:
            download=download_params("url", "genome"),
            gunzip=True,
        script:
            "../scripts/download.py"


if not config["annotation"]["gtf"] and config["annotation"]["url"]:

    localrules:
        download_annotation,

    rule download_annotation:
        output:
            protected(annotation_file()),
        log:
            "logs/download/annotation.log",
        benchmark:
            "benchmarks/download/annotation.tsv"
        conda:
            "../envs/isoflow.yaml"
        params:
            download=download_params("url", "annotation"),
            gunzip=False,
        script:
            "../scripts/download.py"


if not config["gtex"]["tpm"] and config["gtex"]["tpm_url"]:

    localrules:
        download_gtex_tpm,

    rule download_gtex_tpm:
        output:
            protected(gtex_tpm()),
        log:
            "logs/download/gtex_tpm.log",
        benchmark:
            "benchmarks/download/gtex_tpm.tsv"
        conda:
            "../envs/isoflow.yaml"
        params:
            download=download_params("tpm_url", "gtex"),
            gunzip=False,
        script:
            "../scripts/download.py"


if not config["gtex"]["samples"] and config["gtex"]["samples_url"]:

    localrules:
        download_gtex_samples,

    rule download_gtex_samples:
        output:
            gtex_samples(),
        log:
            "logs/download/gtex_samples.log",
        conda:
            "../envs/isoflow.yaml"
        params:
            download=download_params("samples_url", "gtex"),
            gunzip=False,
        script:
            "../scripts/download.py"
