# The offline demo: one rule generates every input the workflow reads (isoflow.demo).
# It exists only when config["demo"]["enabled"], so the full config never sees it as the
# producer of the real resource paths.


if config.get("demo", {}).get("enabled", False):

    rule demo_data:
        # Fixed paths, never the configured ones: with a user's overlay (genome.fasta set
        # to their own file) this rule must not claim, and so overwrite, the user's files.
        output:
            genome="resources/demo/genome.fa",
            annotation="resources/demo/annotation.gtf.gz",
            tpm="resources/demo/transcript_tpm.gct.gz",
            samples="resources/demo/sample_attributes.tsv",
            signal="resources/demo/planted_signal.tsv",
        log:
            "logs/demo_data/demo_data.log",
        conda:
            "../envs/isoflow.yaml"
        params:
            seed=config["demo"].get("seed", 0),
            options=demo_options(),
        script:
            "../scripts/demo_data.py"

    rule demo_constructs:
        # Eight cassettes over the planted signal's components (docs/constructs.md, "Demo
        # cassettes") and a random background at the demo genome's GC: their own random
        # stream, so demo_data's outputs are untouched.
        output:
            constructs="resources/demo/constructs.tsv",
            background="resources/demo/constructs_background.fa",
        log:
            "logs/demo_constructs/demo_constructs.log",
        conda:
            "../envs/isoflow.yaml"
        params:
            seed=config["demo"].get("seed", 0),
            background_len=config["dna"]["window"],
        script:
            "../scripts/demo_constructs.py"
