# Rules of this stage: see DESIGN.md.
#
# rule design (isoflow.design, docs/constructs.md "Design"): a start cassette's editable
# parts optimised for tissue-specific expression with an ensemble of bundles, under the
# synthesis and AAV constraints of isoflow.constraints. Defined only when the config has a
# `design` section (config/demo.yaml designs from one demo cassette): rule all then asks for
# its outputs. `design: null` in an overlay switches it off.
from isoflow.workflow import (
    bundle_mem_mb,
    design_holdout,
    design_inputs,
    design_models,
    design_paths,
    explain_placement,
)

DESIGN_OUTPUTS = design_paths(config)
# The summary table and the two figures go into the report's "5. Design" section.
DESIGN_REPORT = {
    "html": "designs (table)",
    "profiles_figure": "profiles (start vs design)",
    "trajectory_figure": "trajectory",
}
for output_key, report_label in DESIGN_REPORT.items():
    if output_key in DESIGN_OUTPUTS:
        DESIGN_OUTPUTS[output_key] = report(
            DESIGN_OUTPUTS[output_key],
            caption="../report/design.rst",
            category="5. Design",
            subcategory="Design",
            labels={"result": report_label},
        )


if DESIGN_OUTPUTS:

    rule design:
        """Start cassette -> designed cassettes (FASTA, GenBank, TSV), per-tissue profiles
        against the start, every constraint's status, the search's trajectory."""
        input:
            **design_inputs(config, EXPERIMENTS),
        output:
            **DESIGN_OUTPUTS,
        log:
            "logs/design/design.log",
        benchmark:
            "benchmarks/design/design.tsv"
        conda:
            "../envs/isoflow.yaml"
        threads: config["resources"]["model_threads"]
        resources:
            gpu=config["resources"]["gpu"],
            # every bundle of the ensemble at once; the held-out ones are loaded after the
            # ensemble is let go (isoflow.design.design): the larger of the two sets
            # (isoflow.workflow.bundle_mem_mb)
            mem_mb=max(
                bundle_mem_mb(
                    config,
                    [EXPERIMENTS[run] for run in runs],
                    together=True,
                )
                for runs in (
                    design_models(config, EXPERIMENTS),
                    design_holdout(config, EXPERIMENTS),
                )
            ),
        params:
            settings=sorted_keys(
                {
                    k: v
                    for k, v in config["design"].items()
                    if k not in ("construct", "models", "holdout_runs")
                }
            ),
            placement=explain_placement(config),
            demo=bool((config.get("demo") or {}).get("enabled", False)),
        script:
            "../scripts/design.py"
