"""Rule train: dataset (+ genome or embedding caches) -> results/runs/{run}/; with
resources.train_jobs: one, every run in one job (params.runs), each logging to its own file;
with resources.train_processes > 1 in that many spawned workers, and this process then
imports neither torch nor Lightning (isoflow.train_workers)."""

from isoflow.jobs import run_script


def main() -> None:
    from isoflow.workflow import job_settings

    inputs = snakemake.input  # noqa: F821
    params = snakemake.params  # noqa: F821
    settings = job_settings(params.settings, snakemake.config)  # noqa: F821
    processes = int(params.get("processes") or 1)
    if params.get("runs") and processes > 1 and len(params.runs) > 1:
        from isoflow.train_workers import run_in_processes

        run_in_processes(settings, params.runs, inputs.dataset, inputs.get("genome"), processes)
        return
    import torch

    from isoflow.train import run_experiment, run_experiments

    torch.set_num_threads(snakemake.threads)  # noqa: F821
    if params.get("runs"):
        run_experiments(settings, params.runs, inputs.dataset, inputs.get("genome"))
        return
    cache_dirs = {
        key.removeprefix("cache_"): path for key, path in inputs.items() if key.startswith("cache_")
    }
    run_experiment(
        settings,
        params.experiment,
        inputs.dataset,
        params.run_dir,
        genome_fasta=inputs.get("genome"),
        cache_dirs=cache_dirs,
        job_log=snakemake.log[0],  # noqa: F821
    )


# several runs: each run's log is opened by run_experiments. The guard keeps the worker
# processes of resources.train_processes (spawned: they import this file as __mp_main__,
# where Snakemake's `snakemake` object does not exist) from running the job again.
if __name__ == "__main__":
    run_script(main, None if snakemake.params.get("runs") else snakemake.log[0])  # noqa: F821
