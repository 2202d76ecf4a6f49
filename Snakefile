from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/demo.smk"
include: "rules/annotation.smk"
include: "rules/sequences.smk"
include: "rules/targets.smk"
include: "rules/splits.smk"
include: "rules/dataset.smk"
include: "rules/encoders.smk"
include: "rules/train.smk"
include: "rules/models.smk"
include: "rules/explain.smk"
include: "rules/baseline.smk"
include: "rules/constructs.smk"
include: "rules/design.smk"
include: "rules/finetune.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
