"""download_* rules: fetch one URL, validated and verified (isoflow.download)."""

from isoflow.download import RULE_KEYS, config_value, fetch
from isoflow.jobs import run_script


def main() -> None:
    p = snakemake.params.download  # noqa: F821
    config = snakemake.config  # noqa: F821
    # The checksum and retry settings come from the config, not params: setting them must not
    # re-run a finished download (see download_params in rules/common.smk).
    settings = config.get("download", {})
    keys = RULE_KEYS[snakemake.rule]  # noqa: F821
    fetch(
        p["url"],
        snakemake.output[0],  # noqa: F821
        sha256=config_value(config, keys.sha256),
        lock_path=p["lock"],
        retries=settings.get("retries", 3),
        timeout=settings.get("timeout_s", 60),
        deadline=settings.get("deadline_s"),
        min_rate=settings.get("min_bytes_per_s", 1024),
        keys=keys,
        gunzip=snakemake.params.gunzip,  # noqa: F821
    )


run_script(main, snakemake.log[0])  # noqa: F821
