"""isoflow: GTEx isoform expression from DNA, RNA and protein (IsoFormer, reproduced)."""

__version__ = "0.1.0"
