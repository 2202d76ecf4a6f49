"""Encoder checkpoints in the layouts the downloads hold, built small and offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from isoflow.model.encoders import Esm2Encoder, nt_vocabulary, random_encoder


def save_tiny_esm2(folder, name="esm2_t2_tiny"):
    """A fair-esm v2 checkpoint + contact-regression file, as the download holds them
    (every head included); returns the encoder wrapping the same weights."""
    import esm

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=64, attention_heads=4, alphabet=alphabet)
    state = model.state_dict()
    regression = {k: v for k, v in state.items() if k.startswith("contact_head.regression")}
    body = {f"encoder.sentence_encoder.{k}": v for k, v in state.items() if k not in regression}
    cfg = argparse.Namespace(
        encoder_layers=model.num_layers,
        encoder_embed_dim=model.embed_dim,
        encoder_attention_heads=model.attention_heads,
        token_dropout=model.token_dropout,
    )
    torch.save({"model": body, "cfg": {"model": cfg}}, folder / f"{name}.pt")
    torch.save({"model": regression}, folder / f"{name}-contact-regression.pt")
    return Esm2Encoder(model, alphabet)


NT_MODELING_FILE = '''"""Stand-in for the modeling code NT-v2 ships in its repository."""
from transformers.models.esm.modeling_esm import EsmForMaskedLM as _Stock


class EsmForMaskedLM(_Stock):
    pass
'''
# The modeling code of an NT-v2 snapshot older than the Hub's import fix: it imports a name
# this transformers release no longer has (as old snapshots did from transformers.pytorch_utils).
NT_STALE_MODELING_FILE = NT_MODELING_FILE.replace(
    "from transformers.models.esm",
    "from transformers.pytorch_utils import a_name_removed_long_ago  # noqa: F401\n"
    "from transformers.models.esm",
    1,
)
NT_CONFIG_FILE = """from transformers.models.esm.configuration_esm import EsmConfig as _Stock


class EsmConfig(_Stock):
    pass
"""


def save_tiny_nt_snapshot(folder: Path, modeling: str = NT_MODELING_FILE):
    """A tiny Nucleotide Transformer v2 as its Hub repository holds it: the masked-LM
    weights, the tokenizer files and the modeling code that ``config.json``'s ``auto_map``
    names (``trust_remote_code`` runs it; ``modeling``: its text, e.g.
    ``NT_STALE_MODELING_FILE``). Returns ``(tiny encoder, masked-LM model)``."""
    from transformers import EsmForMaskedLM, EsmTokenizer

    folder = Path(folder)
    tiny = random_encoder("nucleotide_transformer")
    mlm = EsmForMaskedLM(tiny.backbone.config)
    mlm.esm.load_state_dict(tiny.backbone.state_dict(), strict=False)
    mlm.save_pretrained(folder)
    vocab_file = folder.parent / f"{folder.name}-vocab.txt"
    vocab_file.write_text("\n".join(nt_vocabulary()) + "\n")
    EsmTokenizer(str(vocab_file), eos_token=None).save_pretrained(folder)
    vocab_file.unlink()
    (folder / "modeling_esm.py").write_text(modeling)
    (folder / "esm_config.py").write_text(NT_CONFIG_FILE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "esm_config.EsmConfig",
        "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return tiny, mlm


def record_nt_download(folder: Path, repo: str, revision: str = "main") -> None:
    """The ``isoflow_source.json`` rule download_encoders writes for a Hub snapshot (as
    ``isoflow.weights.download_hf`` records it), for a snapshot folder built here: a download
    made earlier, e.g. under a transformers release its remote code still imported with."""
    from isoflow import weights

    folder = Path(folder)
    record = {
        "encoder": folder.name,
        "repo": repo,
        "revision": revision,
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "allow_patterns": None,
        "ignore_patterns": None,
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
        weights.CODE_KEY: weights.code_digests(folder),
        "downloaded_at": "2024-01-01T00:00:00Z",
    }
    (folder / weights.SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
