# The offline demo: one rule generates every input the workflow reads (isoflow.demo).
# It exists only when config["demo"]["enabled"], so the full config never sees it as the
# producer of the real resource paths.


if config.get("demo", {}).get("enabled", False):

    rule demo_data:
        output:
            genome=genome_fasta(),
            annotation=annotation_file(),
            tpm=gtex_tpm(),
            samples=gtex_samples(),
            signal=demo_signal_file(),
        log:
            "logs/demo_data/demo_data.log",
        conda:
            "../envs/isoflow.yaml"
        params:
            seed=config["demo"].get("seed", 0),
            options=demo_options(),
        script:
            "../scripts/demo_data.py"
