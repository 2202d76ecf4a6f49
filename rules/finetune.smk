# Rules of this stage: see DESIGN.md.
#
# rule finetune (isoflow.finetune, docs/constructs.md "Fine-tuning"): the bundle of
# finetune.model fine-tuned on the measurement table finetune.table, grouped k-fold CV
# against zero-shot, a k-mer ridge and shuffled labels: results/finetune/. Defined only
# with a finetune section naming a table (config/demo.yaml: the demo's, from rule
# demo_measurements). `finetune: null` in an overlay switches it off.
from isoflow.workflow import (
    FINETUNE_NOT_SETTINGS,
    bundle_mem_mb,
    finetune_construct_options,
    finetune_inputs,
    finetune_paths,
)

FINETUNE_OUTPUTS = finetune_paths(config, EXPERIMENTS)

if config.get("demo", {}).get("enabled", False):

    rule demo_measurements:
        # The demo's construct measurement table (isoflow.demo.write_demo_measurements):
        # 8 families x 6 cassettes with a planted lab signal, its own random stream.
        output:
            table="resources/demo/measurements.tsv",
        log:
            "logs/demo_measurements/demo_measurements.log",
        conda:
            "../envs/isoflow.yaml"
        params:
            seed=config["demo"].get("seed", 0),
        script:
            "../scripts/demo_measurements.py"


if FINETUNE_OUTPUTS:

    rule finetune:
        """A model bundle with a new head fine-tuned on measured constructs: a new bundle,
        CV metrics per fold and column against zero-shot, k-mer ridge and shuffled labels."""
        input:
            **finetune_inputs(config),
        output:
            bundle=directory(FINETUNE_OUTPUTS["bundle"]),
            cv=FINETUNE_OUTPUTS["cv"],
            summary=FINETUNE_OUTPUTS["summary"],
            predictions=FINETUNE_OUTPUTS["predictions"],
            figure=report(
                FINETUNE_OUTPUTS["figure"],
                caption="../report/finetune.rst",
                category="4. Constructs",
                subcategory="Fine-tuning",
                labels={"result": "CV Spearman (figure)"},
            ),
            html=report(
                FINETUNE_OUTPUTS["html"],
                caption="../report/finetune.rst",
                category="4. Constructs",
                subcategory="Fine-tuning",
                labels={"result": "CV metrics (table)"},
            ),
        log:
            "logs/finetune/finetune.log",
        benchmark:
            "benchmarks/finetune/finetune.tsv"
        conda:
            "../envs/isoflow.yaml"
        threads: config["resources"]["model_threads"]
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=bundle_mem_mb(config, [EXPERIMENTS[config["finetune"]["model"]]]),
        params:
            # polya_in_rna, polya_tail, allow_noncanonical_cds, aav, aav_limit: only when set
            # (isoflow.workflow.finetune_construct_options)
            **finetune_construct_options(config),
            settings=sorted_keys(
                {k: v for k, v in config["finetune"].items() if k not in FINETUNE_NOT_SETTINGS}
            ),
            columns=sorted_keys(config["finetune"].get("columns")),
            fill=config["finetune"].get("fill"),
            demo=bool((config.get("demo") or {}).get("enabled", False)),
        script:
            "../scripts/finetune.py"
