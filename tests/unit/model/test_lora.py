"""LoRA adapters (isoflow.model.lora): only adapter weights train; the encoder spec's
``lora`` key builds them; Enformer and finetune_last with LoRA are one-line errors."""

from __future__ import annotations

import pytest
import torch

from isoflow.errors import InputError
from isoflow.model.encoders import build_encoder
from isoflow.model.lora import adapter_parameters, add_lora


@pytest.mark.parametrize(
    ("name", "seqs"),
    [("nucleotide_transformer", ["ACGTACGTAA", "GGCATTACGA"]), ("esm2", ["MKKLV", "MRA"])],
)
def test_only_adapter_weights_train(name, seqs):
    torch.manual_seed(0)
    encoder = add_lora(build_encoder(name, {}), r=2, alpha=4)
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and trainable == set(adapter_parameters(encoder))
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=0.5)
    encoder.train()
    direction = torch.randn(encoder.dim)
    for _ in range(2):  # lora_B starts at zero: the second step moves lora_A too
        optimizer.zero_grad()
        emb, mask = encoder(**encoder.tokenize(seqs))
        (emb[mask] @ direction).sum().backward()
        optimizer.step()
    changed = {n for n, p in encoder.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable


def test_spec_lora_builds_the_same_module_names():
    spec = {"lora": {"r": 2, "alpha": 4}}
    one, two = build_encoder("esm2", spec), build_encoder("esm2", spec)
    assert set(one.state_dict()) == set(two.state_dict())
    assert any("lora_A" in k for k in one.state_dict())
    two.load_state_dict(one.state_dict())  # what load_model does with model.pt


def test_lora_errors_are_one_line():
    with pytest.raises(InputError, match="not EnformerEncoder"):
        build_encoder("enformer", {"lora": {"r": 2}})
    with pytest.raises(InputError, match="set finetune_last to 0"):
        build_encoder("esm2", {"lora": {"r": 2}, "finetune_last": 1})
    with pytest.raises(InputError, match="unknown key"):
        build_encoder("esm2", {"lora": {"rank": 2}})
    with pytest.raises(InputError, match="lora.targets: .*fc1x"):
        add_lora(build_encoder("esm2", {}), targets=["fc1x"])
