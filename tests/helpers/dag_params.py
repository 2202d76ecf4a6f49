"""Each job's params as Snakemake records them: run as a script in its own interpreter,
``python dag_params.py REPO WORKDIR CONFIG...``, it builds the workflow's DAG (as
``snakemake -n --configfile CONFIG...`` in WORKDIR would) and prints JSON: ``jobs``, a job's
outputs (its rule's name without any) -> [rule, the params strings Snakemake's persistence
records and compares (``Persistence._params``: each param's repr)], and ``rules``, the rules
defined with params in this parse. Nothing is run or written but Snakemake's own folder."""

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
from snakemake.workflow import Workflow


def main(repo: str, workdir: str, *configs: str) -> None:
    found: dict = {}

    def dump(self: Workflow) -> None:
        self._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True)
        self._build_dag()
        found["jobs"] = {
            " ".join(map(str, job.output)) or job.rule.name: [
                job.rule.name,
                self.persistence._params(job),
            ]
            for job in self.dag.jobs
        }
        found["rules"] = sorted(rule.name for rule in self.rules if len(rule.params))

    Workflow.printdag = dump  # this process builds one DAG, then prints what it holds
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(c).resolve() for c in configs]),
            snakefile=Path(repo) / "Snakefile",
            workdir=Path(workdir),
        )
        workflow.dag().printdag()
    print(json.dumps(found))


if __name__ == "__main__":
    main(*sys.argv[1:])
