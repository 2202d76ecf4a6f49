"""The demo's post-training jobs (export_model, explain, design, score_constructs, finetune)
one at a time outside Snakemake, from process start to exit (docs/benchmarks.md, "The demo's
post-training jobs").

Run from a scratch folder holding the demo's ``results/`` inputs and ``resources/demo``
(both read only); each job's outputs go under ``--out`` (``results/`` replaced by it), to be
compared with the demo's own outputs with ``cmp``::

    cd /tmp/postjobs/w && /usr/bin/time -f '%e s wall %U+%S s CPU' \\
        python ROOT/bench/bench_postjobs.py explain --out out

The job's rule script runs as Snakemake runs it: in this fresh interpreter, with a
``snakemake`` object holding the rule's input, output, params, threads and log (the config
is config/config.yaml updated by config/demo.yaml, validated with the schema's defaults).
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

START = time.perf_counter()

ROOT = Path(__file__).resolve().parent.parent
# libraries a job may import without needing them (listed by --trace at exit)
HEAVY = ("pytorch_lightning", "lightning", "torchmetrics", "scipy.stats", "sklearn", "matplotlib")
JOBS = ("export_model", "explain", "design", "score_constructs", "finetune")


def demo_config() -> dict:
    import yaml
    from snakemake.utils import update_config, validate

    from isoflow.config import check_config

    # as Snakemake merges them (keys of the --configfile first): the bundle's manifest
    # records config sections in this order
    demo = (ROOT / "config/demo.yaml").read_text()
    config = yaml.safe_load(demo)
    update_config(config, yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    update_config(config, yaml.safe_load(demo))
    for section in ("explain", "design", "finetune"):
        if section in config and config[section] is None:
            del config[section]
    schema = str(ROOT / "config/schema.yaml")
    check_config(config, schema, "config")
    validate(config, schema=schema)
    return config


def job_object(job: str, out: str, run: str | None):
    """The ``snakemake`` object of one job of rule ``job`` (``run``: export_model's run)."""
    from snakemake.iocontainers import Log, Params, Wildcards

    from isoflow import workflow as wf
    from isoflow.experiments import expand_experiments

    config = demo_config()
    experiments = expand_experiments(config)
    dataset = f"results/dataset/{config['dataset']['name']}.parquet"
    genome = config["genome"]["fasta"]
    threads = config["resources"]["model_threads"]
    params: dict = {}
    if job == "export_model":
        run = run or config["models"]["export"][0]
        wildcards = Wildcards(fromdict={"run": run})
        inputs = wf.export_inputs(wildcards, config, experiments, dataset, genome)
        outputs = {"bundle": f"results/models/{run}"}
        params = {
            "run_dir": f"results/runs/{run}",
            "experiment": wf.rule_experiment(wildcards, experiments=experiments),
            "settings": wf.bundle_settings(config, [experiments[run]]),
        }
    elif job == "explain":
        inputs = wf.explain_inputs(config, dataset, genome)
        outputs = wf.explain_paths(config, experiments)
        params = {
            "prefix": outputs["ism"].removesuffix(".ism.parquet"),
            "settings": config["explain"],
            "placement": wf.explain_placement(config),
        }
    elif job == "design":
        inputs = wf.design_inputs(config, experiments)
        outputs = wf.design_paths(config)
        params = {
            "settings": {
                k: v for k, v in config["design"].items() if k not in ("construct", "models")
            },
            "placement": wf.explain_placement(config),
            "demo": True,
        }
    elif job == "score_constructs":
        inputs = wf.score_inputs(config, experiments)
        outputs = wf.construct_outputs(config)
        section = config["constructs"]
        params = {
            "settings": {
                k: v for k, v in section.items() if k not in ("table", "models", "background")
            },
            "demo": True,
        }
    else:
        inputs = wf.finetune_inputs(config)
        outputs = wf.finetune_paths(config, experiments)
        section = config["finetune"]
        params = {
            "settings": {k: v for k, v in section.items() if k not in wf.FINETUNE_NOT_SETTINGS},
            "columns": section.get("columns"),
            "fill": section.get("fill"),
            "demo": True,
        }
    outputs = {k: out + v.removeprefix("results") for k, v in outputs.items()}
    if "prefix" in params:
        params["prefix"] = out + params["prefix"].removeprefix("results")
    for path in outputs.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    class Job:
        pass

    sm = Job()
    sm.input = files(inputs)
    sm.output = files(outputs)
    sm.params = Params(fromdict=params)
    sm.log = Log([f"{out}/{job}.log"])
    sm.threads = threads
    sm.rule = job
    sm.wildcards = Wildcards(fromdict={"run": run} if run else {})
    sm.config = config
    return sm


def files(mapping: dict):
    """A Snakemake file list: a list value is flattened, its name covers the range."""
    from snakemake.iocontainers import Namedlist

    items = Namedlist()
    for key, value in mapping.items():
        start = len(items)
        if isinstance(value, list):
            items.extend(value)
            items._set_name(key, start, len(items))
        else:
            items.append(value)
            items._set_name(key, start)
    return items


def trace(functions: list[str]) -> None:
    """Each log record starts with the process's CPU seconds (user + system) and wall
    seconds since start; ``functions`` (``isoflow.bundle.load_model``,
    ``isoflow.bundle.Model.predict``) log their start and end."""
    import functools
    import importlib
    import logging

    from isoflow import jobs

    factory = logging.getLogRecordFactory()

    def record(*args, **kwargs):
        item = factory(*args, **kwargs)
        item.cpu = time.process_time()
        item.wall = time.perf_counter() - START
        return item

    logging.setLogRecordFactory(record)
    jobs.LOG_FORMAT = "cpu %(cpu)6.2f wall %(wall)6.2f " + jobs.LOG_FORMAT
    log = logging.getLogger("trace")
    for name in functions:
        module_name, _, attr = name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a method: module.Class.function
            module_name, _, cls = module_name.rpartition(".")
            module = getattr(importlib.import_module(module_name), cls)
        function = getattr(module, attr)

        def wrapped(*args, _function=function, _name=name, **kwargs):
            log.info("start %s", _name)
            try:
                return _function(*args, **kwargs)
            finally:
                log.info("end %s", _name)

        functools.update_wrapper(wrapped, function)
        setattr(module, attr, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("--out", default="out", help="replaces results/ in the outputs")
    parser.add_argument("--run", help="export_model: the run (default models.export's first)")
    parser.add_argument(
        "--trace",
        nargs="*",
        metavar="MODULE.FUNCTION",
        help="log records carry the process CPU time; these functions log their start and end",
    )
    args = parser.parse_args()
    if args.trace is not None:
        trace(args.trace)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sm = job_object(args.job, args.out, args.run)
    setup = time.perf_counter() - START
    sys.argv = [str(ROOT / f"scripts/{args.job}.py")]
    if args.trace is not None:
        # registered first, so it runs too when the script ends the process itself
        # (run_script's exit_when_done runs the atexit handlers, then os._exit)
        import atexit
        import os

        def at_exit() -> None:
            cpu = os.times()
            heavy = [m for m in HEAVY if m in sys.modules]
            print(f"exit handlers start: cpu {cpu.user + cpu.system:.2f}", flush=True)
            print(f"imported: {', '.join(heavy) or 'none of ' + ', '.join(HEAVY)}", flush=True)

        atexit.register(at_exit)
    runpy.run_path(sys.argv[0], init_globals={"snakemake": sm}, run_name="__main__")
    # reached only by a script that returns (the five rule scripts end the process)
    print(f"{args.job}: set-up {setup:.2f} s, total {time.perf_counter() - START:.2f} s")


if __name__ == "__main__":
    main()
