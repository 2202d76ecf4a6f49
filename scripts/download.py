"""download_* rules: fetch one URL, validated and verified (isoflow.download)."""

from isoflow.download import RULE_KEYS, fetch
from isoflow.jobs import run_script


def main() -> None:
    p = snakemake.params.download  # noqa: F821
    # Retry settings come from the config, not params: changing them must not re-run a
    # finished download (see download_params in rules/download.smk).
    settings = snakemake.config.get("download", {})  # noqa: F821
    fetch(
        p["url"],
        snakemake.output[0],  # noqa: F821
        sha256=p["sha256"],
        lock_path=p["lock"],
        retries=settings.get("retries", 3),
        timeout=settings.get("timeout_s", 60),
        deadline=settings.get("deadline_s"),
        min_rate=settings.get("min_bytes_per_s", 1024),
        keys=RULE_KEYS.get(snakemake.rule),  # noqa: F821
        gunzip=snakemake.params.gunzip,  # noqa: F821
    )


run_script(main, snakemake.log[0])  # noqa: F821
