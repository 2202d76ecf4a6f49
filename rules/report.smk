# The report: tables and figures marked with report(); `snakemake --report results/report.html`.
# Logic in isoflow/report/ (build.py: one entry point per rule); scripts/report_*.py are thin
# adapters. rules/common.smk's report_outputs() lists the outputs below this config asks for.
from functools import partial
from pathlib import Path

from isoflow.experiments import FACTORS as REPORT_FACTORS
from isoflow.settings import protein_config, rna_config
from isoflow.workflow import (
    REPORT_DIR,
    ablation_dna_spans,
    baseline_bootstrap_input,
    baseline_input,
    baseline_predictions_input,
    bootstrap_files,
    bootstrap_unit,
    bootstrap_unit_inputs,
    bootstrap_unit_settings,
    experiment_params,
    reference_inputs,
    report_provenance,
)

REPORT = config["report"]
# the params of the across-run rules: each experiment's and the paper's keys sorted
# (Snakemake compares params by repr, so the config's key order must not count)
REPORT_EXPERIMENTS = experiment_params(EXPERIMENTS)
REPORT_PAPER = sorted_keys(REPORT["paper"])
# Figures made from the synthetic demo say so on the figure itself.
REPORT_DEMO = bool((config.get("demo") or {}).get("enabled", False))
# The landing page (report/workflow.rst) is rendered with the config only: the facts it
# states (data, config files, git commit, versions, date) ride along under report.provenance,
# taken when the workflow is parsed, so for `--report` at report time.
REPORT["provenance"] = report_provenance(
    config, workflow.configfiles, Path(workflow.current_basedir).parent
)
# Encoders the runs read with random weights: outside the demo the tables across runs say so.
REPORT_TINY = REPORT["provenance"]["tiny_encoders"]
# "vs the paper" only where report.paper holds the paper's numbers to compare with
REPORT_VS = " vs the paper" if REPORT.get("paper") else ""
REPORT_DATA = "1. Data"
REPORT_RUNS = "2. Training runs"
REPORT_ACROSS = "3. Across experiments"
REPORT_ENV = "../envs/isoflow.yaml"

# The sequence-free baseline's metrics.json once a rule `baseline` makes it
# (rules/baseline.smk), else nothing: the one input function naming its path.
report_baseline = partial(baseline_input, rules)
# ... and its predictions.parquet, read by the bootstrap over test genes.
report_baseline_predictions = partial(baseline_predictions_input, rules)

# ... and the bootstrap's resamples of it (rule report_bootstrap).
report_baseline_bootstrap = partial(baseline_bootstrap_input, rules)

# Each run's (and the baseline's) metrics on the bootstrap's resamples of the test units,
# computed once (isoflow.report.bootstrap.write_run) and read by every table across runs.
# The unit is the split's (workflow.bootstrap_unit): loci under the locus scheme, else genes.
REPORT_UNIT = bootstrap_unit(config)
# ... and the annotation the locus split read, to draw its loci (genes: no input).
report_unit_inputs = partial(bootstrap_unit_inputs, config)
REPORT_BOOTSTRAP = bootstrap_files(
    expand("results/runs/{run}/predictions.parquet", run=list(EXPERIMENTS))
)


rule report_biotypes:
    input:
        "results/annotation/transcripts.parquet",
    output:
        figure=report(
            f"{REPORT_DIR}/data/biotypes.svg",
            caption="../report/biotypes.rst",
            category=REPORT_DATA,
            subcategory="Annotation",
            labels={"result": "transcripts by biotype (figure)"},
        ),
        table=report(
            f"{REPORT_DIR}/data/biotypes.html",
            caption="../report/biotypes.rst",
            category=REPORT_DATA,
            subcategory="Annotation",
            labels={"result": "transcripts by biotype (table)"},
        ),
    log:
        "logs/report_biotypes/report_biotypes.log",
    conda:
        REPORT_ENV
    params:
        demo=REPORT_DEMO,
    script:
        "../scripts/report_biotypes.py"


rule report_tissues:
    input:
        f"results/targets/{TISSUE_SET}.stats.tsv",
    output:
        figure=report(
            f"{REPORT_DIR}/data/tissues.svg",
            caption="../report/tissues.rst",
            category=REPORT_DATA,
            subcategory="Expression targets",
            labels={"result": "samples per tissue (figure)"},
        ),
        table=report(
            f"{REPORT_DIR}/data/tissues.html",
            caption="../report/tissues.rst",
            category=REPORT_DATA,
            subcategory="Expression targets",
            labels={"result": "samples per tissue (table)"},
        ),
    log:
        "logs/report_tissues/report_tissues.log",
    conda:
        REPORT_ENV
    params:
        demo=REPORT_DEMO,
    script:
        "../scripts/report_tissues.py"


rule report_splits:
    input:
        f"results/splits/{SPLIT_SCHEME}.tsv",
        # the dataset, only when report.reference_counts is set: its counts per split
        **reference_inputs(config, DATASET),
        # TSS, strand, contig: the held-out transcripts near a train TSS of another gene
        transcripts="results/annotation/transcripts.parquet",
    output:
        figure=report(
            f"{REPORT_DIR}/data/splits.svg",
            caption="../report/splits.rst",
            category=REPORT_DATA,
            subcategory="Splits",
            labels={"result": "split sizes (figure)"},
        ),
        table=report(
            f"{REPORT_DIR}/data/splits.html",
            caption="../report/splits.rst",
            category=REPORT_DATA,
            subcategory="Splits",
            labels={"result": "split sizes (table)"},
        ),
    log:
        "logs/report_splits/report_splits.log",
    conda:
        REPORT_ENV
    params:
        **set_options(config, "report", ["reference_counts"]),
        scheme=SPLIT_SCHEME,
        demo=REPORT_DEMO,
    script:
        "../scripts/report_splits.py"


rule report_lengths:
    input:
        rna="results/sequences/rna.fa.gz",
        protein="results/sequences/protein.fa.gz",
    output:
        figure=report(
            f"{REPORT_DIR}/data/lengths.svg",
            caption="../report/lengths.rst",
            category=REPORT_DATA,
            subcategory="Sequences",
            labels={"result": "sequence lengths (figure)"},
        ),
        table=report(
            f"{REPORT_DIR}/data/lengths.html",
            caption="../report/lengths.rst",
            category=REPORT_DATA,
            subcategory="Sequences",
            labels={"result": "sequence lengths (table)"},
        ),
    log:
        "logs/report_lengths/report_lengths.log",
    conda:
        REPORT_ENV
    params:
        max_nt=rna_config(config)["max_nt"],
        max_aa=protein_config(config)["max_aa"],
        demo=REPORT_DEMO,
    script:
        "../scripts/report_lengths.py"


rule report_targets:
    input:
        targets=f"results/targets/{TISSUE_SET}.parquet",
        stats=f"results/targets/{TISSUE_SET}.stats.tsv",
    output:
        figure=report(
            f"{REPORT_DIR}/data/targets.svg",
            caption="../report/targets.rst",
            category=REPORT_DATA,
            subcategory="Expression targets",
            labels={"result": "target distribution (figure)"},
        ),
        table=report(
            f"{REPORT_DIR}/data/targets.html",
            caption="../report/targets.rst",
            category=REPORT_DATA,
            subcategory="Expression targets",
            labels={"result": "zeros per tissue (table)"},
        ),
        isoforms=report(
            f"{REPORT_DIR}/data/isoforms.svg",
            caption="../report/isoforms.rst",
            category=REPORT_DATA,
            subcategory="Expression targets",
            labels={"result": "isoforms per gene, GTEx vs annotation"},
        ),
    log:
        "logs/report_targets/report_targets.log",
    conda:
        REPORT_ENV
    params:
        demo=REPORT_DEMO,
    script:
        "../scripts/report_targets.py"


# resources.train_jobs: one trains every run in one job, so every run's outputs appear at
# once: one job then draws every run's views (matplotlib and the job start paid once, not
# once per run: docs/benchmarks.md, "The demo on 2 cores"); per_run: one job per run, each
# drawn as soon as its run finishes.
if config["resources"]["train_jobs"] == "one":

    rule report_runs:
        """Every run's views (isoflow.report.build.build_run per run), the files rule
        report_run writes."""
        input:
            transcripts="results/annotation/transcripts.parquet",
            metrics=expand("results/runs/{run}/metrics.json", run=list(EXPERIMENTS)),
            history=expand("results/runs/{run}/history.csv", run=list(EXPERIMENTS)),
            predictions=expand("results/runs/{run}/predictions.parquet", run=list(EXPERIMENTS)),
        output:
            [run_view(run, name, REPORT_RUNS) for run in EXPERIMENTS for name in RUN_VIEWS],
        log:
            "logs/report_run/all_runs.log",
        # The longest job after training, and nothing waits for it but the report: on a few
        # cores (make demo) it is started first, beside the exports, so the construct jobs
        # fill the other core; at priority 0 Snakemake left it for last, alone on one core
        # (docs/benchmarks.md, "The demo on 2 cores").
        priority: 2
        conda:
            REPORT_ENV
        params:
            runs=list(EXPERIMENTS),
            views=list(RUN_VIEWS),
            scatter_tissues=REPORT["scatter_tissues"],
            scatter_max_points=REPORT["scatter_max_points"],
            demo=REPORT_DEMO,
        script:
            "../scripts/report_runs.py"

else:

    rule report_run:
        input:
            transcripts="results/annotation/transcripts.parquet",
            metrics="results/runs/{run}/metrics.json",
            history="results/runs/{run}/history.csv",
            predictions="results/runs/{run}/predictions.parquet",
        output:
            **{name: run_view("{run}", name, REPORT_RUNS) for name in RUN_VIEWS},
        log:
            "logs/report_run/{run}.log",
        conda:
            REPORT_ENV
        params:
            scatter_tissues=REPORT["scatter_tissues"],
            scatter_max_points=REPORT["scatter_max_points"],
            demo=REPORT_DEMO,
        script:
            "../scripts/report_run.py"


# The bootstrap's resamples of each run (and the baseline): one report_bootstrap job per run,
# or with resources.train_jobs: one (every run trained in one job) one job for all of them.
if config["resources"]["train_jobs"] == "one":

    rule report_bootstraps:
        """Every run's and the baseline's metrics on the bootstrap's resamples
        (isoflow.report.bootstrap.write_runs: what runs of one test set share taken once),
        the files rule report_bootstrap writes."""
        input:
            unpack(report_unit_inputs),
            predictions=expand("results/runs/{run}/predictions.parquet", run=list(EXPERIMENTS))
            + report_baseline_predictions(),
        output:
            REPORT_BOOTSTRAP + report_baseline_bootstrap(),
        log:
            "logs/report_bootstrap/all_runs.log",
        benchmark:
            "benchmarks/report_bootstrap/all_runs.tsv"
        conda:
            REPORT_ENV
        params:
            bootstrap_resamples=REPORT["bootstrap_resamples"],
            bootstrap_seed=REPORT["bootstrap_seed"],
            unit=bootstrap_unit_settings(config),
        script:
            "../scripts/report_bootstrap.py"

else:

    rule report_bootstrap:
        input:
            unpack(report_unit_inputs),
            predictions="results/{scored}/predictions.parquet",
        output:
            "results/{scored}/bootstrap.npz",
        log:
            "logs/report_bootstrap/{scored}.log",
        benchmark:
            "benchmarks/report_bootstrap/{scored}.tsv"
        wildcard_constraints:
            scored="baseline|runs/[^/]+",
        conda:
            REPORT_ENV
        params:
            bootstrap_resamples=REPORT["bootstrap_resamples"],
            bootstrap_seed=REPORT["bootstrap_seed"],
            unit=bootstrap_unit_settings(config),
        script:
            "../scripts/report_bootstrap.py"


rule report_experiments:
    input:
        unpack(report_baseline),
        metrics=run_outputs(),
        # each run's resamples of the test units (rule report_bootstrap, beside metrics.json)
        bootstrap=REPORT_BOOTSTRAP,
        baseline_bootstrap=report_baseline_bootstrap,
    output:
        table=report(
            f"{REPORT_DIR}/experiments/runs.html",
            caption="../report/runs.rst",
            category=REPORT_ACROSS,
            subcategory="All runs",
            labels={"result": f"all runs{REPORT_VS} (table)"},
        ),
        tsv=f"{REPORT_DIR}/experiments/runs.tsv",
        figure=report(
            f"{REPORT_DIR}/experiments/runs.svg",
            caption="../report/runs.rst",
            category=REPORT_ACROSS,
            subcategory="All runs",
            labels={"result": f"all runs{REPORT_VS} (figure)"},
        ),
        within_gene=report(
            f"{REPORT_DIR}/experiments/within_gene.svg",
            caption="../report/within_gene.rst",
            category=REPORT_ACROSS,
            subcategory="Within-gene isoform ranking",
            labels={"result": "within-gene Spearman, all runs"},
        ),
    log:
        "logs/report_experiments/report_experiments.log",
    conda:
        REPORT_ENV
    params:
        experiments=REPORT_EXPERIMENTS,
        paper=REPORT_PAPER,
        demo=REPORT_DEMO,
        tiny_encoders=REPORT_TINY,
        bootstrap_resamples=REPORT["bootstrap_resamples"],
        bootstrap_seed=REPORT["bootstrap_seed"],
        bootstrap_unit=REPORT_UNIT,
    script:
        "../scripts/report_experiments.py"


rule report_ablation:
    input:
        unpack(report_baseline),
        metrics=run_outputs(),
        # each run's resamples of the test units (rule report_bootstrap, beside metrics.json)
        bootstrap=REPORT_BOOTSTRAP,
        baseline_bootstrap=report_baseline_bootstrap,
    output:
        table=report(
            f"{REPORT_DIR}/experiments/ablation_{{factor}}.html",
            caption="../report/ablation.rst",
            category=REPORT_ACROSS,
            subcategory="Ablation: {factor}",
            labels={"result": f"ablation {{factor}}{REPORT_VS} (table)"},
        ),
        figure=report(
            f"{REPORT_DIR}/experiments/ablation_{{factor}}.svg",
            caption="../report/ablation.rst",
            category=REPORT_ACROSS,
            subcategory="Ablation: {factor}",
            labels={"result": f"ablation {{factor}}{REPORT_VS} (figure)"},
        ),
    log:
        "logs/report_ablation/{factor}.log",
    wildcard_constraints:
        factor="|".join(REPORT_FACTORS),
    conda:
        REPORT_ENV
    params:
        experiments=REPORT_EXPERIMENTS,
        paper=REPORT_PAPER,
        demo=REPORT_DEMO,
        tiny_encoders=REPORT_TINY,
        bootstrap_resamples=REPORT["bootstrap_resamples"],
        bootstrap_seed=REPORT["bootstrap_seed"],
        bootstrap_unit=REPORT_UNIT,
        factor="{factor}",
        # run -> the DNA it reads, for the DNA-encoder and pooling ablations (else empty)
        dna_spans=lambda wildcards: ablation_dna_spans(config, EXPERIMENTS, wildcards.factor),
    script:
        "../scripts/report_ablation.py"


rule report_scaling:
    input:
        unpack(report_baseline),
        metrics=run_outputs(),
        # each run's resamples of the test units (rule report_bootstrap, beside metrics.json)
        bootstrap=REPORT_BOOTSTRAP,
        baseline_bootstrap=report_baseline_bootstrap,
    output:
        table=report(
            f"{REPORT_DIR}/experiments/scaling.html",
            caption="../report/scaling.rst",
            category=REPORT_ACROSS,
            subcategory="Data scaling",
            labels={"result": "data scaling (table)"},
        ),
        figure=report(
            f"{REPORT_DIR}/experiments/scaling.svg",
            caption="../report/scaling.rst",
            category=REPORT_ACROSS,
            subcategory="Data scaling",
            labels={"result": "data scaling (figure)"},
        ),
    log:
        "logs/report_scaling/report_scaling.log",
    conda:
        REPORT_ENV
    params:
        experiments=REPORT_EXPERIMENTS,
        paper=REPORT_PAPER,
        demo=REPORT_DEMO,
        tiny_encoders=REPORT_TINY,
        bootstrap_resamples=REPORT["bootstrap_resamples"],
        bootstrap_seed=REPORT["bootstrap_seed"],
        bootstrap_unit=REPORT_UNIT,
        factor="fraction",
    script:
        "../scripts/report_ablation.py"
