"""A command's output set under an interruption: the commands `isoflow score`, `explain` and
`design` run without a model (their model work replaced by a quick stand-in whose numbers
follow the ``--model`` path), in this process with an error injected while the outputs are
written, or in a fresh interpreter killed (SIGKILL) there.

``FAKES[command]`` maps ``module:attribute`` to the stand-in (``helpers.interrupted:name``),
installed by :func:`install` (a ``monkeypatch`` or ``setattr``) and by :func:`run_killed`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TISSUES = ["Liver", "Brain", "Testis"]


def _rng(name) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(str(name).encode()).hexdigest()[:8], 16))


# ---------------------------------------------------------------- isoflow score


def fake_score_constructs(constructs, bundles, *, target_tissues=None, **_):
    """``score.score_constructs`` without a model: predictions drawn from the bundle paths."""
    from isoflow.score import Scores

    predictions = np.stack(
        [_rng(b).normal(size=(len(constructs), len(TISSUES))) for b in bundles]
    ).astype(np.float32)
    return Scores(
        constructs=[c.id for c in constructs],
        tissues=TISSUES,
        models=[{"run": Path(b).name, "path": str(b)} for b in bundles],
        predictions=predictions,
        targets=list(target_tissues or []),
    )


# ---------------------------------------------------------------- isoflow explain


def fake_explain_job(model, out, *, attention=False, **_):
    """``explain.explain_job`` without a model: small tables and figures drawn from
    ``model``, written by ``explain.write_outputs``."""
    import pandas as pd
    from matplotlib.figure import Figure

    from isoflow.explain import write_outputs

    rng = _rng(model)
    ism = pd.DataFrame({"position": range(4), "effect": rng.normal(size=4)})
    frames = {"ism": ism, "ism_summary": ism.rename(columns={"effect": "score"})}
    figures = {}
    for name in ("ism", "attention") if attention else ("ism",):
        fig = Figure(figsize=(2, 1.5))
        fig.add_subplot().plot(rng.normal(size=5))
        fig.suptitle(f"{name} by {Path(model).name}")
        figures[name] = (fig, False)
    if attention:
        frames["attention"] = pd.DataFrame({"region": ["utr5"], "share": [rng.random()]})
    return write_outputs(out, frames, figures)


# ---------------------------------------------------------------- isoflow design


def fake_check_bundles(bundles):
    return [{"tissues": TISSUES, "run": Path(b).name, "dna": {"window": 512}} for b in bundles]


class FakeScorer:
    """``design.Scorer`` without a model: Liver likes GC in the 3'UTR, scaled per bundle."""

    def __init__(self, bundles, start, layout, **_):
        self.tissues = list(TISSUES)
        self.runs = [Path(b).name for b in bundles]
        self.models = list(bundles)
        self.scale = [1 + _rng(b).random() for b in bundles]
        self.calls = 0

    def __call__(self, candidates):
        out = np.zeros((len(self.models), len(candidates), len(TISSUES)), dtype=np.float32)
        for i, parts in enumerate(candidates):
            gc = sum(parts["utr3"].count(b) for b in "GC") / len(parts["utr3"])
            for k, scale in enumerate(self.scale):
                out[k, i] = (scale * gc, 0.5, 0.2)
        self.calls += len(candidates) * len(self.models)
        return out


FAKES = {
    "score": {"isoflow.score:score_constructs": "helpers.interrupted:fake_score_constructs"},
    "explain": {"isoflow.explain:explain_job": "helpers.interrupted:fake_explain_job"},
    "design": {
        "isoflow.design:Scorer": "helpers.interrupted:FakeScorer",
        "isoflow.score:check_bundles": "helpers.interrupted:fake_check_bundles",
    },
}


def _resolve(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    return importlib.import_module(module), name


def install(command: str, setattr_=setattr) -> None:
    """Put ``command``'s stand-ins in place (``setattr_``: e.g. ``monkeypatch.setattr``)."""
    for target, fake in FAKES[command].items():
        module, name = _resolve(target)
        fake_module, fake_name = _resolve(fake)
        setattr_(module, name, getattr(fake_module, fake_name))


_KILLED = """
import json, os, signal, sys
from helpers.interrupted import _resolve, install
command, kill, argv = json.loads(sys.argv[1])
install(command)
module, name = _resolve(kill)
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(module, name, killed)
from isoflow.commands import main
sys.exit(main(argv))
"""


def run_killed(command: str, argv: list[str], kill: str) -> subprocess.CompletedProcess:
    """``isoflow command *argv`` with the stand-ins, in a fresh interpreter SIGKILLed when it
    calls ``kill`` (``module:attribute``); the process must have died by the signal."""
    env = dict(os.environ)
    tests = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _KILLED, json.dumps([command, kill, [command, *argv]])],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == -9, (done.returncode, done.stderr[-2000:])
    return done


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too; a folder ends in ``/``) -> its md5."""
    out = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        out[name + "/" if path.is_dir() else name] = (
            "" if path.is_dir() else hashlib.md5(path.read_bytes()).hexdigest()
        )
    return out
