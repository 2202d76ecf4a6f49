# Rules of this stage: see DESIGN.md.
#
# rule explain (isoflow.explain, docs/constructs.md "Explain a prediction"): in-silico
# mutagenesis of one construct or transcript region with a model bundle, and its
# cross-attention by RNA region. Defined only when the config has an `explain` section
# naming a model (config/demo.yaml explains one cassette): rule all then asks for its
# outputs. `explain: null` in an overlay switches it off.
from isoflow.workflow import (
    bundle_mem_mb,
    explain_inputs,
    explain_paths,
    explain_placement,
)

EXPLAIN_OUTPUTS = explain_paths(config, EXPERIMENTS)

if EXPLAIN_OUTPUTS:

    rule explain:
        """ISM effect map (per position x alt x tissue), its logo track (a transcript's
        also as a bedGraph per track: bedgraph_0, ...), and attention by region, from a
        model bundle."""
        input:
            **explain_inputs(config, f"results/dataset/{DATASET}.parquet", genome_fasta()),
        output:
            **{k: v for k, v in EXPLAIN_OUTPUTS.items() if k.startswith("bedgraph_")},
            ism=EXPLAIN_OUTPUTS["ism"],
            ism_tsv=EXPLAIN_OUTPUTS["ism_tsv"],
            summary=EXPLAIN_OUTPUTS["summary"],
            ism_figure=report(
                EXPLAIN_OUTPUTS["ism_figure"],
                caption="../report/explain_ism.rst",
                category="4. Constructs",
                subcategory="Explain",
            ),
            attention=EXPLAIN_OUTPUTS["attention"],
            attention_figure=report(
                EXPLAIN_OUTPUTS["attention_figure"],
                caption="../report/explain_attention.rst",
                category="4. Constructs",
                subcategory="Explain",
            ),
        log:
            "logs/explain/explain.log",
        benchmark:
            "benchmarks/explain/explain.tsv"
        # the longest job after the exports on a few cores: started before the shorter
        # construct jobs (see rule report_runs)
        priority: 1
        conda:
            "../envs/isoflow.yaml"
        threads: config["resources"]["model_threads"]
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=bundle_mem_mb(config, [EXPERIMENTS[config["explain"]["model"]]]),
        params:
            prefix=lambda wildcards, output: output.ism.removesuffix(".ism.parquet"),
            settings=sorted_keys(config["explain"]),
            placement=explain_placement(config),
        script:
            "../scripts/explain.py"
