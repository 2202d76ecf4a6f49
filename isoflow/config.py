"""Config checks that read as one line: the key path, the value and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from isoflow.errors import InputError


def key_path(parts) -> str:
    """``['genome', 'sha256']`` -> ``genome.sha256``; list indices as ``[0]``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def check_config(config: dict[str, Any], schema_path: str | Path, source: str = "config") -> None:
    """Raise an InputError naming the first (most relevant) schema violation, on one line.

    Snakemake's own ``validate`` (which also fills defaults) prints a multi-line schema dump;
    this runs first so a user sees ``config:genome.sha256: 'xyz' does not match ...``.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise InputError(source, key_path(error.absolute_path), error.message)
