"""Reading what `snakemake -n` prints."""

from __future__ import annotations

import re


def parse_dry_run(text: str) -> list[dict]:
    """Jobs of a `snakemake -n` printout: rule, local, and its indented `key: value` lines."""
    jobs: list[dict] = []
    for line in text.splitlines():
        start = re.fullmatch(r"(local)?rule (\S+):", line)
        if start:
            jobs.append({"rule": start[2], "local": bool(start[1])})
        elif jobs and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            jobs[-1].setdefault(key, value)
    for job in jobs:
        job["resources"] = dict(
            item.split("=", 1) for item in job.get("resources", "").split(", ") if "=" in item
        )
    return jobs
