# Rules of this stage: see DESIGN.md. Constructs (config constructs.table: a TSV, GenBank
# file or folder) scored by the bundles of constructs.models (default models.export), one
# ensemble: results/constructs/ (isoflow.score; docs/constructs.md). Nothing here without
# constructs.table.
from isoflow.workflow import bundle_mem_mb, construct_models, construct_outputs, score_inputs

CONSTRUCTS = config["constructs"]
# The heat map and the HTML table go into the report's "4. Constructs" section.
CONSTRUCT_REPORT = {"figure": "scores (heat map)", "html": "scores (table)"}
CONSTRUCT_OUTPUTS = construct_outputs(config)
for output_key, report_label in CONSTRUCT_REPORT.items():
    if output_key in CONSTRUCT_OUTPUTS:
        CONSTRUCT_OUTPUTS[output_key] = report(
            CONSTRUCT_OUTPUTS[output_key],
            caption="../report/constructs.rst",
            category="4. Constructs",
            subcategory="Construct scores",
            labels={"result": report_label},
        )


if CONSTRUCTS["table"]:

    rule score_constructs:
        """Constructs -> predicted log(1 + TPM) per tissue (mean, sd over the bundles),
        specificity for the target tissues, heat map (isoflow.score)."""
        input:
            **score_inputs(config, EXPERIMENTS),
        output:
            **CONSTRUCT_OUTPUTS,
        log:
            "logs/score_constructs/score_constructs.log",
        benchmark:
            "benchmarks/score_constructs/score_constructs.tsv"
        conda:
            "../envs/isoflow.yaml"
        threads: config["resources"]["model_threads"]
        resources:
            gpu=config["resources"]["gpu"],
            # one bundle at a time (isoflow.workflow.bundle_mem_mb)
            mem_mb=bundle_mem_mb(
                config, [EXPERIMENTS[run] for run in construct_models(config, EXPERIMENTS)]
            ),
        params:
            settings=sorted_keys(
                {k: v for k, v in CONSTRUCTS.items() if k not in ("table", "models", "background")}
            ),
            demo=bool((config.get("demo") or {}).get("enabled", False)),
        script:
            "../scripts/score_constructs.py"
