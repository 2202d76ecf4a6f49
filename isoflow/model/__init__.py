"""IsoFormer model parts: encoders (``encoders``), aggregators, the full model."""
