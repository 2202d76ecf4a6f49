"""Config validation, resource paths and every input function the rules share."""

import os
import sys
from pathlib import Path

from snakemake.utils import validate

from isoflow.config import check_config, check_nt_remote_code, replaced_experiments
from isoflow.cpu import pin_cpu_kernels
from isoflow.weights import SOURCE_FILE
from isoflow.experiments import expand_experiments
from isoflow.workflow import (
    BASELINE_METRICS,
    REPORT_DIR,
    RUN_VIEWS,
    check_weights_folders,
    construct_outputs,
    design_paths,
    explain_paths,
    finetune_paths,
    model_outputs,
    report_paths,
    set_options,
    sorted_keys,
)

# An overlay switches a config's optional section off with `SECTION: null` (a config merge
# cannot delete a key); validate would fill defaults into it, so it goes before.
for _section in ("explain", "design", "finetune"):
    if _section in config and config[_section] is None:
        del config[_section]

# One line naming the key first; then Snakemake's validate fills the schema's defaults.
check_config(config, workflow.source_path("../config/schema.yaml"), "config")
# Two overlays setting `experiments`: Snakemake keeps the last file's list only.
_replaced = replaced_experiments(workflow.configfiles, workflow.basedir)
if _replaced:
    print(_replaced, file=sys.stderr)
validate(config, schema="../config/schema.yaml")
# Pretrained encoders sharing a weights folder ask for the same download; a folder outside
# resources/models/ already holds one (it cannot be downloaded there).
check_weights_folders(config)

# torch's OpenMP threads sleep while they wait rather than spin (jobs inherit this from the
# Snakemake process; a value set by the user wins): with more runnable threads than cores, a
# spinning thread holds a core its peer needs, and a 2-thread demo run took 11x the CPU time
# and 16x the wall time it takes passively (docs/benchmarks.md), with the same bytes out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# torch's CPU kernels held to one instruction set (resources.cpu_kernels, isoflow.cpu), so a
# CPU run writes the same bytes on an AVX-512 machine as on an AVX2 one; jobs inherit it.
_kernels, _kernels_line = pin_cpu_kernels(config["resources"]["cpu_kernels"])
if config["resources"]["cpu_kernels"] != "native" and not _kernels:
    print(f"isoflow: {_kernels_line}", file=sys.stderr)

BUILD = config["build"]
DATASET = config["dataset"]["name"]
TISSUE_SET = config["tissue_set"]
SPLIT_SCHEME = config["split"]["scheme"]
# run name -> experiment dict, defaults filled
EXPERIMENTS = expand_experiments(config)


def genome_fasta():
    """The genome FASTA: a local path from the config wins over the download."""
    return config["genome"]["fasta"] or f"resources/genome/{BUILD}.fa"


def annotation_file():
    """The GTF/GFF3: a local path from the config wins over the download."""
    local = config["annotation"]["gtf"]
    if local:
        return local
    url = config["annotation"]["url"] or "annotation.gtf.gz"
    return f"resources/annotation/{Path(url).name}"


def gtex_tpm():
    return config["gtex"]["tpm"] or "resources/gtex/transcript_tpm.gct.gz"


def gtex_samples():
    return config["gtex"]["samples"] or "resources/gtex/sample_attributes.tsv"


def dataset_outputs():
    return [
        f"results/dataset/{DATASET}.parquet",
        f"results/targets/{TISSUE_SET}.stats.tsv",
    ]


def run_outputs():
    return expand("results/runs/{run}/metrics.json", run=list(EXPERIMENTS))


def baseline_outputs():
    return [BASELINE_METRICS]


def report_outputs():
    """Every report figure and table this config can make (rules/report.smk's outputs)."""
    return report_paths(EXPERIMENTS, REPORT_DIR)


# Each per-run view's caption and label, by output name (isoflow.workflow.RUN_VIEWS gives
# its file); rule report_run (one job per run) or report_runs (all runs in one job).
RUN_VIEW_CAPTIONS = {
    "curves": ("run_curves.rst", "1. training curves"),
    "tissue_table": ("run_per_tissue.rst", "2. per-tissue metrics (table)"),
    "tissue_figure": ("run_per_tissue.rst", "3. per-tissue metrics (figure)"),
    "scatter": ("run_scatter.rst", "4. predicted vs observed"),
    "within_gene": ("run_within_gene.rst", "5. within-gene isoform ranking"),
    "errors": ("run_errors.rst", "6. error by biotype and length"),
}


def run_view(run, name, category):
    """View ``name`` of ``run`` (a run name, or the ``{run}`` wildcard) for the report."""
    caption, label = RUN_VIEW_CAPTIONS[name]
    return report(
        f"{REPORT_DIR}/runs/{run}/{RUN_VIEWS[name]}",
        caption=f"../report/{caption}",
        category=category,
        subcategory=run,
        labels={"result": label},
    )


def all_outputs():
    return (
        dataset_outputs()
        + run_outputs()
        + model_outputs(config, EXPERIMENTS)
        + list(explain_paths(config, EXPERIMENTS).values())
        + baseline_outputs()
        + list(construct_outputs(config).values())
        + list(design_paths(config).values())
        + list(finetune_paths(config, EXPERIMENTS).values())
        + report_outputs()
    )


DOWNLOAD_LOCK = "resources/checksums.lock"


def download_params(url_key, section):
    """URL of one download and the lock file, for a rule's params.

    Only the URL is: a changed URL re-runs the download. The configured sha256 is read by the
    script from the config, and checked against an existing download once the DAG is built
    (check_pinned_downloads, below), so pinning the checksum of a downloaded genome fetches
    nothing again; so are the retry settings (download.retries/timeout_s), so tuning them
    never invalidates a download.
    """
    return {"url": config[section][url_key], "lock": DOWNLOAD_LOCK}


def demo_options():
    """Demo parameters other than enabled/seed (isoflow.demo.DemoParams fields), keys sorted."""
    demo = config.get("demo", {})
    return sorted_keys({k: v for k, v in demo.items() if k not in ("enabled", "seed")})


# An input replaced by a changed copy with an older mtime (cp -p, rsync -a) reruns nothing in
# Snakemake: stop with the `touch` that makes it rerun (isoflow.provenance, docs/rerun.md).
# Checked once the DAG is built, for its jobs only: Snakemake 9.27 has no public hook there
# (`onstart` runs neither for -n nor when nothing is to be done), so the workflow's own
# `_build_dag` is wrapped. Commands that build no DAG (--unlock, --list-rules,
# --cleanup-metadata) never check; --touch skips it; --report and other DAG commands that
# run no job warn; job subprocesses (cluster, --cores in a job) skip it: the run that
# scheduled them checked.
import functools

from snakemake.logging import logger

from isoflow.errors import InputError
from isoflow.provenance import (
    ORIGIN_ENV,
    check_records,
    check_report_current,
    origin_env,
    run_origins,
)
from isoflow.workflow import config_files, git_commit

# What made each job's outputs, in its provenance record: the commit and config files this
# workflow is parsed with (job scripts inherit the variable; a job's own Snakemake process
# keeps the one of the run that scheduled it).
if not ((workflow.remote_exec or workflow.subprocess_exec) and ORIGIN_ENV in os.environ):
    os.environ[ORIGIN_ENV] = origin_env(
        git_commit(Path(workflow.current_basedir).parent), config_files(workflow.configfiles)
    )


def check_pinned_downloads(jobs):
    """The configured sha256 of each download job that will not run (its output exists),
    against what that file was served as (isoflow.download.check_pinned)."""
    downloads = [job for job in jobs if "download" in job.params.keys()]
    if downloads:
        # requests loads only where a download exists, not at every parse
        from isoflow.download import check_pinned

        for job in downloads:
            check_pinned(
                config,
                job.rule.name,
                job.output[0],
                gunzip=job.params.gunzip,
                lock_path=job.params.download["lock"],
                recorded_params=workflow.persistence.params(job.output[0]),
            )


def check_provenance(dag):
    """Stop a run or dry-run whose DAG has a job with a changed, not newer input, or an
    existing download whose configured checksum differs from what it was served as."""
    if workflow.touch or workflow.remote_exec or workflow.subprocess_exec:
        return
    if REPORTING:
        # the report is read as current: no job may be due, and the page says what made each run
        check_report_current(dag, config_files(workflow.configfiles))
    current = [job for job in dag.jobs if not dag.needrun(job)]
    try:
        check_records([job.output for job in current])
        check_pinned_downloads(current)
    except InputError as err:
        if workflow.executor_plugin is not None or REPORTING:  # a run, a dry-run, --report
            raise
        logger.warning(f"isoflow: warning: {err}")
    if REPORTING and isinstance(config["report"].get("provenance"), dict):
        config["report"]["provenance"].update(run_origins(job.output for job in dag.jobs))


def check_needed_remote_code(dag):
    """A downloaded NT-v2 snapshot's remote code imports (older ones import names
    transformers removed): one line now, not in an embed job hours on. Only the weights
    folders whose download record a job that will run reads (embed, train), so the data half,
    --report, --touch and a DAG without such a job import nothing; the run that schedules
    the jobs checks, their own Snakemake processes need not again; ISOFLOW_CHECK_REMOTE_CODE=0
    skips it (isoflow.config.check_nt_remote_code)."""
    if workflow.touch or workflow.remote_exec or workflow.subprocess_exec:
        return
    needed = {
        os.path.dirname(str(path))
        for job in dag.jobs
        if dag.needrun(job)
        for path in job.input
        if os.path.basename(str(path)) == SOURCE_FILE
    }
    if needed:
        check_nt_remote_code(config, needed=needed)


def _build_dag_then_check(build_dag):
    @functools.wraps(build_dag)
    def build():
        build_dag()
        check_provenance(workflow.dag)
        check_needed_remote_code(workflow.dag)

    return build


REPORTING = False  # set by `--report` (Workflow.create_report) before it builds the DAG


def _report_then_check(create_report):
    @functools.wraps(create_report)
    def create(*args, **kwargs):
        global REPORTING
        REPORTING = True
        return create_report(*args, **kwargs)

    return create


workflow._build_dag = _build_dag_then_check(workflow._build_dag)
workflow.create_report = _report_then_check(workflow.create_report)
