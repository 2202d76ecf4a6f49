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


@pytest.mark.slow
def test_gtex_training_with_lora_trains_adapters_and_exports_a_loadable_bundle(tmp_path):
    """`encoders.nucleotide_transformer.lora` in a training config: the run's checkpoint
    holds the adapters, the NT base weights stay as built, and the exported bundle loads
    (its spec rebuilds the adapters) and passes the export check."""
    import copy

    from helpers.training import TINY_CONFIG, make_dataset
    from isoflow.bundle import export_bundle, load_model
    from isoflow.train import run_experiment

    dataset, fasta = make_dataset(tmp_path, window=512)
    config = copy.deepcopy(TINY_CONFIG)
    config["train"]["max_epochs"] = 1
    nt = config["encoders"]["nucleotide_transformer"]
    nt.update(finetune_last=0, lora={"r": 2, "alpha": 4})
    experiment = {"modalities": ["rna"], "aggregator": "cross_attention"}
    run_dir = tmp_path / "run"
    run_experiment(config, experiment, dataset, run_dir, fasta)
    settings = {**config, "dna": {"window": 512}, "dataset": {"name": "tiny"}}
    export_bundle(
        run_dir,
        tmp_path / "bundle",
        config=settings,
        experiment=experiment,
        dataset_path=dataset,
        genome_fasta=fasta,
        check_n=4,
        device="cpu",
    )
    model = load_model(tmp_path / "bundle", device="cpu")
    state = model.network.encoders["rna"].state_dict()
    built = build_encoder("nucleotide_transformer", nt).state_dict()
    adapters = [k for k in state if "lora_" in k]
    assert adapters
    assert any(not torch.equal(state[k], built[k]) for k in adapters if "lora_B" in k)
    for key in state:
        if "lora_" not in key:
            assert torch.equal(state[key], built[key]), key  # base weights did not train
