# Rules of this stage: see DESIGN.md.
from functools import partial

from isoflow.settings import protein_config, rna_config
from isoflow.workflow import embed_inputs, embed_mem_mb, embed_pooling, encoder_settings


# Downloads run on the host that runs snakemake: cluster compute nodes often have no
# internet access.
localrules:
    download_encoders,


rule download_encoders:
    """Pretrained weights of one configured encoder into resources/models/{encoder}/
    (isoflow.weights.download_encoder), with the resolved commit or sha256 in
    isoflow_source.json."""
    output:
        protected("resources/models/{encoder}/isoflow_source.json"),
    log:
        "logs/download_encoders/{encoder}.log",
    wildcard_constraints:
        encoder="[A-Za-z0-9_]+",
    conda:
        "../envs/isoflow.yaml"
    params:
        encoders=config["encoders"],
    script:
        "../scripts/download_encoders.py"


rule embed:
    """Frozen-encoder embedding cache of every dataset transcript (isoflow.embed):
    one forward per distinct sequence, pooled to at most `pool_to` positions; holds at most
    `embed.shard_mb` of it at a time, and a killed job's finished shards are reused by the
    next (results/embeddings/.{encoder}.partial/)."""
    input:
        unpack(
            partial(
                embed_inputs,
                config=config,
                dataset=f"results/dataset/{DATASET}.parquet",
                genome=genome_fasta(),
            )
        ),
    output:
        directory("results/embeddings/{encoder}"),
    log:
        "logs/embed/{encoder}.log",
    benchmark:
        "benchmarks/embed/{encoder}.tsv"
    wildcard_constraints:
        encoder="[A-Za-z0-9_]+",
    conda:
        "../envs/isoflow.yaml"
    threads: 2
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=partial(embed_mem_mb, config=config),
    params:
        # shard_mb, precision, batch_letters: only when set (isoflow.workflow.set_options)
        **set_options(config, "embed", ["shard_mb", "precision", "batch_letters"]),
        encoders=encoder_settings(config),
        rna=rna_config(config),
        protein=protein_config(config),
    script:
        "../scripts/embed.py"


rule embed_positional:
    """The same cache pooled by position (isoflow.embed.pool_positional): DNA tokens kept
    unpooled in a crop of `embed.dna_crop_bins` around the TSS, RNA and protein tokens
    averaged over fixed strides (`embed.stride_nt`, `embed.stride_aa`) from the 5' end; read
    by runs whose `pooling` (or `embed.pooling`) is positional."""
    input:
        unpack(
            partial(
                embed_inputs,
                config=config,
                dataset=f"results/dataset/{DATASET}.parquet",
                genome=genome_fasta(),
            )
        ),
    output:
        directory("results/embeddings/{encoder}-positional"),
    log:
        "logs/embed/{encoder}-positional.log",
    benchmark:
        "benchmarks/embed/{encoder}-positional.tsv"
    wildcard_constraints:
        encoder="[A-Za-z0-9_]+",
    conda:
        "../envs/isoflow.yaml"
    threads: 2
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=partial(embed_mem_mb, config=config),
    params:
        **set_options(config, "embed", ["shard_mb", "precision", "batch_letters"]),
        pooling=embed_pooling(config),
        encoders=encoder_settings(config),
        rna=rna_config(config),
        protein=protein_config(config),
    script:
        "../scripts/embed.py"
