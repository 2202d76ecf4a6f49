# The offline demo: one rule generates every input the workflow reads (isoflow.demo).
# It exists only when config["demo"]["enabled"], so the full config never sees it as the
# producer of the real resource paths.


def demo_signal_file():
    """The planted per-transcript signal, written beside the demo genome."""
    return str(Path(genome_fasta()).parent / "planted_signal.tsv")


def demo_options():
    """Demo parameters other than enabled/seed (isoflow.demo.DemoParams fields)."""
    return {k: v for k, v in config.get("demo", {}).items() if k not in ("enabled", "seed")}


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
