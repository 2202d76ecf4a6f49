"""Rule finetune: measurement table + model bundle -> results/finetune/ (isoflow.finetune)."""

from pathlib import Path

import torch

from isoflow.commands import PLACEMENT_OPTIONS, READ_OPTIONS
from isoflow.finetune import finetune_table
from isoflow.jobs import run_script


def main() -> None:
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    out_dir = Path(sm.output.cv).parent
    params = dict(sm.params.items())
    placement = {"fill": sm.params.fill, "background": sm.input.get("background")}
    placement |= {k: v for k, v in params.items() if k in PLACEMENT_OPTIONS and k != "fill"}
    placement = {k: v for k, v in placement.items() if v is not None}  # unset: the default
    finetune_table(
        sm.input.table,
        sm.input.model,
        out_dir,
        settings=dict(sm.params.settings),
        columns=sm.params.columns,
        placement=placement,
        read_options={k: v for k, v in params.items() if k in READ_OPTIONS},
        demo=sm.params.demo,
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
