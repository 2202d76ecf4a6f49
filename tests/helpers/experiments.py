"""An ablation grid the experiments, workflow and report tests share."""

ALL3 = ["dna", "rna", "protein"]
# One run per setting (two seeds for the first): a modality, aggregator, DNA-encoder and
# training-fraction ablation each.
ABLATIONS = {
    "experiments": [
        {"modalities": ALL3},
        {"modalities": ALL3, "seed": 1},
        {"modalities": ["rna", "protein"]},
        {"modalities": ["dna"]},
        {"modalities": ALL3, "aggregator": "concat"},
        {"modalities": ALL3, "dna_encoder": "borzoi"},
        {"modalities": ALL3, "fraction": 0.25},
    ]
}
