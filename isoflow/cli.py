"""Entry point helpers shared by rule scripts: logging to snakemake.log and one-line errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from isoflow.errors import InputError


def run_script(main: Callable[[], None], log_path: str | None = None) -> None:
    """Run ``main`` with logging sent to ``log_path``; an InputError exits 1 with one line.

    The one line goes both to the log and to stderr, so Snakemake's own error summary
    shows it without opening the log.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        main()
    except InputError as err:
        logging.getLogger("isoflow").error("%s", err)
        print(f"isoflow: error: {err}", file=sys.stderr)
        sys.exit(1)
