"""isoflow: GTEx isoform expression from DNA, RNA and protein (IsoFormer, reproduced)."""

__version__ = "0.1.0"

__all__ = ["load_model"]


def __getattr__(name: str):
    # ``isoflow.load_model`` without importing torch at ``import isoflow`` (the workflow
    # imports the package at parse time, docs/benchmarks.md)
    if name == "load_model":
        from isoflow.bundle import load_model

        return load_model
    raise AttributeError(f"module 'isoflow' has no attribute {name!r}")
