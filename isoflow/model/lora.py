"""LoRA adapters (peft) on the attention projections of Nucleotide Transformer and ESM-2.

``add_lora(encoder, r, alpha, dropout, targets)`` injects low-rank adapters in place
(``peft.inject_adapter_in_model``: the encoder stays an :class:`Encoder`, no wrapper) and
leaves only the adapter weights trainable. An encoder spec's optional ``lora:`` key
(``{r, alpha, dropout, targets}``) makes ``build_encoder`` do this, so GTEx training and
``isoflow finetune`` share it, and a bundle whose manifest spec holds ``lora`` rebuilds the
same module names at load (its ``model.pt`` holds base and adapter weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from isoflow.errors import InputError

# Family class name -> the Linear layers adapted by default (query, key, value projections).
DEFAULT_TARGETS = {
    "NucleotideTransformerEncoder": ("query", "key", "value"),
    "Esm2Encoder": ("q_proj", "k_proj", "v_proj"),
}
LORA_DEFAULTS: dict[str, Any] = {"r": 8, "alpha": 16, "dropout": 0.0, "targets": None}
ADAPTER_MARK = "lora_"  # peft's parameter names: ...lora_A.default.weight, lora_B...


def lora_settings(spec: dict | None) -> dict[str, Any]:
    """A ``lora`` spec over ``LORA_DEFAULTS``."""
    out = {**LORA_DEFAULTS, **(spec or {})}
    unknown = set(out) - set(LORA_DEFAULTS)
    if unknown:
        raise InputError(None, "lora", f"unknown key(s) {sorted(unknown)}; keys: {LORA_DEFAULTS}")
    return out


def add_lora(
    encoder: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    targets: Sequence[str] | None = None,
) -> nn.Module:
    """Inject LoRA adapters of rank ``r`` (scaling ``alpha / r``, ``dropout`` on their
    input) into the ``targets`` Linear layers of ``encoder`` (default: its family's
    ``DEFAULT_TARGETS``); afterwards only adapter weights require gradients. Returns the
    same module."""
    from peft import LoraConfig, inject_adapter_in_model

    family = type(encoder).__name__
    if targets is None:
        if family not in DEFAULT_TARGETS:
            raise InputError(
                None,
                "lora",
                f"LoRA adapters are offered for Nucleotide Transformer and ESM-2, not {family}",
            )
        targets = DEFAULT_TARGETS[family]
    if int(r) < 1:
        raise InputError(None, "lora.r", f"rank must be >= 1, not {r}")
    config = LoraConfig(
        r=int(r),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=list(targets),
        bias="none",
    )
    encoder.requires_grad_(False)
    try:
        inject_adapter_in_model(config, encoder)
    except ValueError as err:
        raise InputError(None, "lora.targets", f"{list(targets)}: {err}") from None
    n = 0
    for name, param in encoder.named_parameters():
        is_adapter = ADAPTER_MARK in name
        param.requires_grad_(is_adapter)
        n += is_adapter
    if not n:
        raise InputError(None, "lora.targets", f"{list(targets)} matched no layer of {family}")
    # a frozen Encoder keeps its children in eval mode; adapters with dropout must train
    if hasattr(encoder, "_trainable"):
        encoder._trainable = -2  # neither 0 (all eval) nor a block count: see Encoder.train
    return encoder


def adapter_parameters(module: nn.Module) -> list[str]:
    """Names of the LoRA adapter parameters of ``module``."""
    return [name for name, _ in module.named_parameters() if ADAPTER_MARK in name]
