# Rules of this stage: see DESIGN.md.
from functools import partial

from isoflow.workflow import (
    embed_inputs,
    embed_mem_mb,
    embed_packages,
    embed_parts,
    embed_pooling,
    embed_settings,
    embed_threads,
    folder_download,
    part_pooling,
    shared_forward_encoders,
)


# Downloads run on the host that runs snakemake: cluster compute nodes often have no
# internet access.
localrules:
    download_encoders,


rule download_encoders:
    """Pretrained weights into resources/models/{folder}/ (isoflow.weights.download_encoder)
    for the encoders whose weights folder it is (their `path`, by default
    resources/models/<encoder>), with the resolved commit or sha256 in isoflow_source.json."""
    output:
        protected("resources/models/{folder}/isoflow_source.json"),
    log:
        "logs/download_encoders/{folder}.log",
    wildcard_constraints:
        folder="[A-Za-z0-9_]+",
    conda:
        "../envs/isoflow.yaml"
    params:
        # the download source alone (repo, revision, esm_model, url, file patterns): editing
        # any other key, or another encoder, downloads nothing again
        source=partial(folder_download, config=config),
    script:
        "../scripts/download_encoders.py"


# embed.jobs picks one of two definitions of the cache rules: 1 (default) is one job per
# cache; N > 1 scatters each cache over N embed_part jobs (whole batches of the single job's
# plan each, so several GPUs embed at once) and gathers them into the same folder, with the
# same keys, items and stored values (rules embed_gather, embed_positional_gather:
# isoflow.embed.gather_cache; tests/unit/test_embed.py).
EMBED_JOBS = int(config["embed"]["jobs"])
# embed.share_forward: encoders whose adaptive and positional caches are both read get one
# embed_shared job writing both from the same forwards (isoflow.embed.build_caches).
SHARED_EMBEDS = shared_forward_encoders(config, EXPERIMENTS)


if EMBED_JOBS == 1:

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
        threads: partial(embed_threads, config=config)
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=partial(embed_mem_mb, config=config),
        params:
            # precision, batch_letters, compile: only when set (isoflow.workflow.set_options);
            # they change the stored values. embed.shard_mb only splits the same rows over
            # other shard files: read from the config by the job (workflow.embed_shard_mb)
            **set_options(config, "embed", ["precision", "batch_letters", "compile"]),
            # this encoder's spec and its modality's limits only: editing another encoder,
            # or the rna/protein limits of a DNA encoder, rebuilds nothing
            settings=partial(embed_settings, config=config),
            # torch's and the family's package versions, as the store digest holds them:
            # an upgrade reruns this encoder's caches (workflow.embed_packages)
            packages=partial(embed_packages, config=config),
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
        threads: partial(embed_threads, config=config)
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=partial(embed_mem_mb, config=config),
        params:
            **set_options(config, "embed", ["precision", "batch_letters", "compile"]),
            pooling=embed_pooling(config),
            # pool_to left at its default: a positional cache does not depend on it
            settings=partial(embed_settings, config=config, pooling="positional"),
            packages=partial(embed_packages, config=config),
        script:
            "../scripts/embed_pooled.py"

    if SHARED_EMBEDS:

        ruleorder: embed_shared > embed
        ruleorder: embed_shared > embed_positional

        rule embed_shared:
            """Both caches of one encoder, results/embeddings/{encoder} (adaptive) and
            {encoder}-positional, from one forward per batch (embed.share_forward; the
            bytes rules embed and embed_positional write, tests/unit/test_embed.py)."""
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
                adaptive=directory("results/embeddings/{encoder}"),
                positional=directory("results/embeddings/{encoder}-positional"),
            log:
                "logs/embed/{encoder}+positional.log",
            benchmark:
                "benchmarks/embed/{encoder}+positional.tsv"
            wildcard_constraints:
                encoder="|".join(SHARED_EMBEDS),
            conda:
                "../envs/isoflow.yaml"
            threads: partial(embed_threads, config=config)
            resources:
                gpu=config["resources"]["gpu"],
                mem_mb=partial(embed_mem_mb, config=config, caches=2),
            params:
                **set_options(config, "embed", ["precision", "batch_letters", "compile"]),
                pooling=embed_pooling(config),
                settings=partial(embed_settings, config=config),
                packages=partial(embed_packages, config=config),
            script:
                "../scripts/embed_shared.py"

else:

    rule embed_part:
        """Part {part} of embed.jobs of one cache (isoflow.embed.build_cache(part=...)):
        a temporary folder the gather rule joins."""
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
            temp(directory("results/embeddings/.parts/{encoder}/{pooling}/{part}")),
        log:
            "logs/embed/{encoder}-{pooling}-part{part}.log",
        benchmark:
            "benchmarks/embed/{encoder}-{pooling}-part{part}.tsv"
        wildcard_constraints:
            encoder="[A-Za-z0-9_]+",
            pooling="adaptive|positional",
            part="[0-9]+",
        conda:
            "../envs/isoflow.yaml"
        threads: partial(embed_threads, config=config)
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=partial(embed_mem_mb, config=config),
        params:
            **set_options(config, "embed", ["precision", "batch_letters", "compile"]),
            pooling=partial(part_pooling, config=config),
            part=lambda wildcards: [int(wildcards.part), EMBED_JOBS],
            settings=partial(embed_settings, config=config),
            packages=partial(embed_packages, config=config),
        script:
            "../scripts/embed_pooled.py"

    # The gathers only link or copy the parts' files: no model, so their own names (not
    # embed / embed_positional, which the SLURM profile sends to the GPU partition) and no
    # gpu resource; they run on the profile's CPU partition with its default resources.
    rule embed_gather:
        """The embed.jobs part caches of results/embeddings/{encoder} (adaptive pooling)
        gathered into one (isoflow.embed.gather_cache)."""
        input:
            partial(embed_parts, pooling="adaptive", jobs=EMBED_JOBS),
        output:
            directory("results/embeddings/{encoder}"),
        log:
            "logs/embed/{encoder}.log",
        wildcard_constraints:
            encoder="[A-Za-z0-9_]+",
        conda:
            "../envs/isoflow.yaml"
        params:
            # as the parts': a gathered cache is rebuilt after an upgrade too
            packages=partial(embed_packages, config=config),
        script:
            "../scripts/embed_gather.py"

    rule embed_positional_gather:
        """The same for results/embeddings/{encoder}-positional."""
        input:
            partial(embed_parts, pooling="positional", jobs=EMBED_JOBS),
        output:
            directory("results/embeddings/{encoder}-positional"),
        log:
            "logs/embed/{encoder}-positional.log",
        wildcard_constraints:
            encoder="[A-Za-z0-9_]+",
        conda:
            "../envs/isoflow.yaml"
        params:
            # as the parts': a gathered cache is rebuilt after an upgrade too
            packages=partial(embed_packages, config=config),
        script:
            "../scripts/embed_gather.py"
