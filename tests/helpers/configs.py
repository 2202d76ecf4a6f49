"""Config files laid over each other as Snakemake lays several --configfile (nested
mappings merge, later files win)."""

from __future__ import annotations

import copy

import yaml

from helpers.paths import REPO


def merged_configs(*paths: str) -> dict:
    """The config files at ``paths`` (relative to the checkout) merged key by key."""

    def update(base: dict, overlay: dict) -> dict:
        for key, value in overlay.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value
        return base

    config: dict = {}
    for path in paths:
        update(config, copy.deepcopy(yaml.safe_load((REPO / path).read_text())))
    return config


def reversed_keys(value):
    """``value`` with every mapping's keys in reverse order, recursively; lists as they are."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value
