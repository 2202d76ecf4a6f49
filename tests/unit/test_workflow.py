"""The workflow's layout (isoflow.workflow): input functions, run patterns, report paths and
the landing page's facts, all computed when Snakemake reads the rules."""

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from helpers.configs import merged_configs, reversed_keys
from helpers.experiments import ABLATIONS
from helpers.paths import REPO
from isoflow import workflow
from isoflow.errors import InputError
from isoflow.experiments import expand_experiments
from isoflow.settings import with_encoder_defaults

# --- training runs -------------------------------------------------------------------


def test_train_inputs_follow_cached_modalities():
    config = {"model": {"cached_modalities": ["rna"]}}
    exp = {"modalities": ["dna", "rna"], "dna_encoder": "enformer"}
    inputs = workflow.train_inputs(config, exp, "d.parquet", "g.fa")
    assert inputs == {
        "dataset": "d.parquet",
        "genome": "g.fa",
        "fai": "g.fa.fai",
        "cache_rna": "results/embeddings/nucleotide_transformer",
    }
    config = {"model": {"cached_modalities": ["dna", "protein"]}}
    inputs = workflow.train_inputs(config, {"modalities": ["dna", "protein"]}, "d.parquet", "g.fa")
    assert inputs == {
        "dataset": "d.parquet",
        "cache_dna": "results/embeddings/enformer",
        "cache_protein": "results/embeddings/esm2",
    }


def test_a_pretrained_encoder_read_raw_is_an_input_of_train_and_export():
    """The full config with RNA read raw and NT fine-tuned: the train job builds NT from its
    weights folder, so its download record is an input (else the DAG never downloads NT);
    the export of that run needs it too. A cached or tiny encoder's weights are not inputs."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["model"]["cached_modalities"] = ["dna", "protein"]
    config["encoders"]["nucleotide_transformer"]["finetune_last"] = 2
    experiments = expand_experiments(config)
    ((run, experiment),) = experiments.items()
    inputs = workflow.train_inputs(config, experiment, "d.parquet", "g.fa")
    assert inputs == {
        "dataset": "d.parquet",
        "cache_dna": "results/embeddings/enformer-positional",
        "cache_protein": "results/embeddings/esm2-positional",
        "weights_rna": "resources/models/nucleotide_transformer/isoflow_source.json",
    }
    exported = workflow.export_inputs(
        SimpleNamespace(run=run), config, experiments, "d.parquet", "g.fa"
    )
    assert exported["weights_rna"] == inputs["weights_rna"]
    grouped = workflow.grouped_train_inputs(config, experiments, "d.parquet", "g.fa")
    assert grouped["weights_nucleotide_transformer"] == inputs["weights_rna"]
    config["encoders"]["nucleotide_transformer"]["source"] = "tiny"
    assert "weights_rna" not in workflow.train_inputs(config, experiment, "d.parquet", "g.fa")


def test_grouped_train_runs_and_inputs_cover_every_run():
    config = {"model": {"cached_modalities": ["dna", "rna"]}}
    experiments = expand_experiments(
        {
            "seeds": [0],
            "experiments": [
                {"modalities": ["dna", "protein"]},
                {"modalities": ["dna", "rna"], "dna_encoder": "borzoi"},
            ],
        }
    )
    runs = workflow.grouped_train_runs(config, experiments, "d.parquet", "g.fa")
    assert list(runs) == list(experiments)
    first, second = runs.values()
    assert first["run_dir"] == "results/runs/dna+protein_enformer_cross_attention_s0"
    assert first["log"] == "logs/train/dna+protein_enformer_cross_attention_s0.log"
    assert first["cache_dirs"] == {"dna": "results/embeddings/enformer"}
    assert second["cache_dirs"] == {
        "dna": "results/embeddings/borzoi",
        "rna": "results/embeddings/nucleotide_transformer",
    }
    inputs = workflow.grouped_train_inputs(config, experiments, "d.parquet", "g.fa")
    assert inputs == {
        "dataset": "d.parquet",  # no genome: every run reads DNA from a cache
        "cache_enformer": "results/embeddings/enformer",
        "cache_borzoi": "results/embeddings/borzoi",
        "cache_nucleotide_transformer": "results/embeddings/nucleotide_transformer",
    }


def test_train_cpus_count_what_the_job_keeps_busy():
    """A train job's cpus_per_task (a review of the full DAG: config.yaml's num_workers 0 runs
    asked SLURM for 8 CPUs): its torch threads, plus num_workers loader processes or, with
    none, the one prefetch thread; per DDP rank; the demo's two one-thread workers."""

    def cpus(threads, train=None, resources=None, **kwargs):
        config = {"train": train or {}, "resources": resources or {}}
        return workflow.train_cpus(None, threads, config, **kwargs)

    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert full["train"]["num_workers"] == 0 and full["train"]["prefetch_batches"] > 0
    assert workflow.train_cpus(None, 2, full) == 3  # 2 torch threads + the prefetch thread
    assert cpus(2) == 2  # the defaults: no workers, no prefetching
    assert cpus(1, {"prefetch_batches": 0}) == 1
    assert cpus(2, {"num_workers": 4, "prefetch_batches": 2}) == 6  # workers: no prefetch thread
    ddp = {"strategy": "ddp", "prefetch_batches": 2}
    assert cpus(2, {**ddp, "devices": 4}) == 12
    assert cpus(2, {**ddp, "devices": [0, 2]}) == 6
    assert cpus(2, {**ddp, "devices": "auto"}, {"gpu": 2}) == 6
    assert cpus(2, {**ddp, "devices": -1}) == 3  # no GPU asked for: one rank
    # train_jobs one: that many one-thread workers when there is more than one run
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    processes = demo["resources"]["train_processes"]
    threads = max(2, processes)  # the rule's threads (rules/train.smk)
    assert workflow.train_cpus(None, threads, demo, runs=18, processes=processes) == 2
    assert cpus(2, {"prefetch_batches": 1}, runs=3, processes=4) == 6
    assert cpus(3, {"prefetch_batches": 1}, runs=1, processes=2) == 4  # one run: in-process


def test_train_runtime_is_per_round_of_the_jobs_processes():
    """The one job of train_jobs: one trains its runs train_processes at a time, so it needs
    the per-run time once per round, ceil(runs / processes): it asked for it once per run
    (a review of the full DAG: the 45-run grid in 2 processes asked for 45 days)."""

    def minutes(runs, processes, per_run=60):
        config = {"resources": {"train_runtime_min": per_run, "train_processes": processes}}
        return workflow.train_runtime_min(config, runs)

    assert minutes(45, 1) == 45 * 60  # one after another
    assert minutes(45, 2) == 23 * 60
    assert minutes(45, 4) == 12 * 60
    assert minutes(4, 4) == minutes(3, 8) == minutes(1, 2) == 60  # one round
    assert minutes(0, 2) == 60  # no run: still a valid request
    assert minutes(5, 2, per_run=1440) == 3 * 1440


def test_run_pattern_matches_configured_runs_only():
    pattern = workflow.run_pattern({"dna+rna_enformer_concat_s0": {}, "rna_enformer_concat_s0": {}})
    assert re.fullmatch(pattern, "dna+rna_enformer_concat_s0")
    assert not re.fullmatch(pattern, "dnaarna_enformer_concat_s0")  # '+' is literal
    assert not re.fullmatch(pattern, "protein_enformer_concat_s0")
    assert not re.fullmatch(workflow.run_pattern({}), "")


# --- embedding caches ----------------------------------------------------------------


def test_embed_inputs_by_modality_and_source():
    config = {
        "encoders": {
            "enformer": {"source": "tiny"},
            "esm2": {"source": "pretrained", "path": "resources/models/esm2"},
            "nt_dna": {"source": "pretrained", "path": "resources/models/nucleotide_transformer"},
        }
    }
    common = {"config": config, "dataset": "results/dataset/d.parquet", "genome": "g.fa"}
    assert workflow.embed_inputs(SimpleNamespace(encoder="enformer"), **common) == {
        "dataset": "results/dataset/d.parquet",
        "genome": "g.fa",
        "fai": "g.fa.fai",
    }
    assert workflow.embed_inputs(SimpleNamespace(encoder="esm2"), **common) == {
        "dataset": "results/dataset/d.parquet",
        "weights": "resources/models/esm2/isoflow_source.json",
    }
    nt = workflow.embed_inputs(SimpleNamespace(encoder="nt_dna"), **common)
    assert nt["weights"] == "resources/models/nucleotide_transformer/isoflow_source.json"
    assert nt["genome"] == "g.fa"
    with pytest.raises(InputError, match="not configured"):
        workflow.embed_inputs(SimpleNamespace(encoder="borzoi"), **common)
    # a window the encoder cannot read stops the DAG here, before any job downloads or loads it
    config["encoders"]["borzoi"], config["dna"] = {"source": "pretrained"}, {"window": 196_608}
    with pytest.raises(InputError, match="the pretrained Borzoi encoders.borzoi reads exactly"):
        workflow.embed_inputs(SimpleNamespace(encoder="borzoi"), **common)


def full_encoders() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return {"encoders": config["encoders"]}


def test_a_weights_folder_downloads_the_source_of_the_encoders_reading_it():
    """Rule download_encoders is keyed by the folder: its params are the download source of
    the encoders whose weights folder it is (config.yaml's nt_dna shares
    nucleotide_transformer's), nothing else of their specs."""
    config = full_encoders()
    folders = workflow.weights_folders(config)
    assert folders["resources/models/nucleotide_transformer"] == [
        "nucleotide_transformer",
        "nt_dna",
    ]
    nt = workflow.folder_download(SimpleNamespace(folder="nucleotide_transformer"), config)
    assert nt == {
        "repo": "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
        "revision": "main",
    }
    config["encoders"]["nt_dna"] = {
        **config["encoders"]["nt_dna"],
        "pool_to": 7,
        "finetune_last": 2,
    }
    assert workflow.folder_download(SimpleNamespace(folder="nucleotide_transformer"), config) == nt
    assert workflow.folder_download(SimpleNamespace(folder="esm2"), config) == {
        "esm_model": "esm2_t30_150M_UR50D"
    }
    workflow.check_weights_folders(config)
    with pytest.raises(
        InputError, match="no pretrained encoder has its weights in resources/models/nt_dna"
    ):
        workflow.folder_download(SimpleNamespace(folder="nt_dna"), config)


def test_encoders_sharing_a_folder_must_ask_for_the_same_download():
    config = full_encoders()
    config["encoders"]["nt_dna"]["repo"] = (
        "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"
    )
    with pytest.raises(InputError) as err:
        workflow.check_weights_folders(config)
    assert str(err.value) == (
        "config:encoders.nt_dna: shares its weights folder resources/models/nucleotide_transformer "
        "with encoders.nucleotide_transformer but asks for another download (repo "
        "'InstaDeepAI/nucleotide-transformer-v2-500m-multi-species' vs "
        "'InstaDeepAI/nucleotide-transformer-v2-250m-multi-species'), so it would read "
        "nucleotide_transformer's weights: give encoders.nt_dna a path of its own (path: "
        "resources/models/nt_dna) or the same repo"
    )
    config["encoders"]["nt_dna"]["path"] = "resources/models/nt_dna"
    workflow.check_weights_folders(config)
    config["encoders"]["nt_dna"]["source"] = "tiny"  # a tiny one reads no folder
    del config["encoders"]["nt_dna"]["path"]
    workflow.check_weights_folders(config)
    config = full_encoders()
    config["encoders"]["nt_dna"]["ignore_patterns"] = ["*.h5"]
    with pytest.raises(InputError, match="ignore_patterns \\['\\*.h5'\\] vs None"):
        workflow.check_weights_folders(config)


def test_a_folder_outside_resources_models_must_hold_a_download(tmp_path, monkeypatch):
    """Rule download_encoders writes resources/models/<name> only: a pretrained encoder's
    path elsewhere must already hold weights isoflow downloaded, else one line at parse."""
    monkeypatch.chdir(tmp_path)
    config = {"encoders": {"esm2": {"source": "pretrained", "path": "/data/esm", "esm_model": "m"}}}
    with pytest.raises(InputError) as err:
        workflow.check_weights_folders(config)
    assert str(err.value) == (
        "config:encoders.esm2.path: /data/esm holds no isoflow_source.json, and rule "
        "download_encoders downloads only into resources/models/<name> (letters, digits, _): "
        "set path: resources/models/esm2 to download there, or put weights downloaded by "
        "isoflow (with their isoflow_source.json) in /data/esm"
    )
    shared = tmp_path / "shared" / "esm"
    shared.mkdir(parents=True)
    (shared / "isoflow_source.json").write_text("{}")
    config["encoders"]["esm2"]["path"] = str(shared)
    workflow.check_weights_folders(config)
    config["encoders"]["esm2"]["path"] = "resources/models/esm_2"  # downloadable, absent
    workflow.check_weights_folders(config)
    config["encoders"]["esm2"]["path"] = "resources/models/esm-2"  # not the rule's wildcard
    with pytest.raises(InputError, match="resources/models/esm-2 holds no isoflow_source.json"):
        workflow.check_weights_folders(config)


# --- the report --------------------------------------------------------------------


def test_report_paths_ask_only_for_views_the_runs_support():
    data_only = workflow.report_paths({})
    assert len(data_only) == 11 and "results/report/data/lengths.svg" in data_only
    assert "results/report/data/targets.svg" in data_only
    assert "results/report/data/isoforms.svg" in data_only
    assert not [p for p in data_only if "/experiments/" in p or "/runs/" in p]
    experiments = expand_experiments(ABLATIONS)
    paths = workflow.report_paths(experiments, "out")
    assert sum(p.endswith("/errors.svg") for p in paths) == len(experiments)
    for factor in ("modalities", "dna_encoder", "aggregator"):
        assert f"out/experiments/ablation_{factor}.html" in paths
    assert "out/experiments/scaling.svg" in paths
    assert sum(p.endswith("/scatter.png") for p in paths) == len(experiments)
    one = dict(list(experiments.items())[:1])
    assert not [p for p in workflow.report_paths(one) if "ablation" in p or "scaling" in p]
    assert "results/report/experiments/runs.html" in workflow.report_paths(one)
    assert len(set(paths)) == len(paths)


def test_baseline_input_only_when_a_rule_makes_it():
    class Rules:
        def __init__(self, *names):
            self.names = names

        def has(self, name):
            return name in self.names

    assert workflow.baseline_input(Rules("train", "baseline"), None) == {
        "baseline": "results/baseline/metrics.json"
    }
    assert workflow.baseline_input(Rules("train"), None) == {}
    # the report's bootstrap reads the baseline's predictions beside its metrics
    assert workflow.baseline_predictions_input(Rules("baseline"), None) == [
        "results/baseline/predictions.parquet"
    ]
    assert workflow.baseline_predictions_input(Rules("train"), None) == []


# --- the report's landing page -----------------------------------------------------


def test_git_commit_is_the_checkout_or_unknown(tmp_path):
    assert workflow.git_commit(tmp_path) == "unknown"  # not a git checkout
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f").write_text("1")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert workflow.git_commit(repo) == head
    (repo / "f").write_text("2")
    assert workflow.git_commit(repo) == head + " + uncommitted changes"
    (repo / "sub").mkdir()
    assert workflow.git_commit(repo / "sub") == "unknown"  # inside another repository


def test_report_provenance_states_the_data_and_versions(tmp_path):
    facts = workflow.report_provenance({"demo": {"enabled": True}}, ["config/demo.yaml"], tmp_path)
    assert facts["demo"] and facts["data"].startswith("synthetic demo data")
    assert facts["configfiles"] == ["config/demo.yaml"] and facts["commit"] == "unknown"
    inside = Path.cwd() / "config" / "demo.yaml"
    assert workflow.report_provenance({}, [inside, "/elsewhere/x.yaml"], tmp_path)[
        "configfiles"
    ] == [
        "config/demo.yaml",
        "/elsewhere/x.yaml",
    ]
    assert set(facts["versions"]) == {"isoflow", "snakemake", "torch", "pytorch-lightning"}
    assert facts["versions"]["snakemake"][0].isdigit()
    held = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/bin"}
    assert workflow.report_provenance({}, [], tmp_path, held)["cpu_kernels"] == (
        "resources.cpu_kernels avx2; on the machine that built the report: "
        "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"
    )
    native = {"resources": {"cpu_kernels": "native"}}
    assert workflow.report_provenance(native, [], tmp_path, {})["cpu_kernels"].endswith(
        "native; on the machine that built the report: not held"
    )
    gtex = workflow.report_provenance({"tissue_set": "smtsd"}, [], tmp_path)
    assert not gtex["demo"] and gtex["data"].startswith("the expression matrix (not configured)")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert workflow.report_provenance(config, [], tmp_path)["data"] == (
        "GTEx v8 transcript TPM (GTEx_Analysis_2017-06-05_v8_RSEMv1.3.0_transcript_tpm.gct.gz), "
        "smts tissues, with the annotation gencode.v26.primary_assembly.annotation.gtf.gz"
    )
    config["gtex"]["tpm"] = "/data/mine.gct.gz"
    config["annotation"]["gtf"] = "/data/ensembl.gtf.gz"
    assert workflow.report_provenance(config, [], tmp_path)["data"] == (
        "the expression matrix /data/mine.gct.gz (GTEx layout), smts tissues, "
        "with the annotation /data/ensembl.gtf.gz"
    )
    # as Snakemake applies them: the Snakefile's configfile first (lowest precedence)
    files = ["config/demo.yaml", "mine.yaml", "config/config.yaml"]
    assert workflow.report_provenance({}, files, tmp_path)["configfiles"] == [
        "config/config.yaml",
        "config/demo.yaml",
        "mine.yaml",
    ]
    # `--configfile config/config.yaml config/demo.yaml` (the README's --directory commands)
    # applies config.yaml twice in a row: listed once. Applied again after an overlay it
    # stays (it overrides that overlay).
    files = ["config/config.yaml", "config/demo.yaml", "config/config.yaml"]
    assert workflow.config_files(files) == ["config/config.yaml", "config/demo.yaml"]
    files = ["config/demo.yaml", "config/config.yaml", "config/config.yaml"]
    assert workflow.config_files(files) == [
        "config/config.yaml",
        "config/demo.yaml",
        "config/config.yaml",
    ]
    assert gtex["encoders"] == "none (no run configured)" and gtex["tiny_encoders"] == []


def test_report_provenance_names_each_encoder_and_where_its_weights_come_from(tmp_path):
    # a run on GTEx whose encoder spec sets no source reads random tiny weights (the default):
    # the landing page and the tables across runs must say so, next to the paper's numbers
    config = {
        "tissue_set": "smts",
        "experiments": [{"modalities": ["dna", "protein"], "dna_encoder": "enformer"}],
        "model": {"protein_encoder": "esm2"},
        "encoders": {
            "enformer": {"source": "pretrained", "repo": "EleutherAI/enformer-official-rough"},
            "esm2": {"esm_model": "esm2_t30_150M_UR50D"},
        },
    }
    facts = workflow.report_provenance(config, [], tmp_path)
    assert facts["encoders"] == (
        "enformer: pretrained, EleutherAI/enformer-official-rough revision main (the resolved "
        "commit or checksum in resources/models/enformer/isoflow_source.json); "
        "esm2: tiny, random weights (seed 0), not pretrained"
    )
    assert facts["tiny_encoders"] == ["esm2"]
    assert workflow.software_versions(["no-such-package-isoflow"]) == {
        "no-such-package-isoflow": "not installed"
    }


def test_set_options_only_what_differs_from_the_schema_default():
    from isoflow.workflow import reference_inputs, set_options

    keys = ["gene_types", "exclude_contigs"]
    assert (
        set_options({"annotation": {"gene_types": None, "exclude_contigs": []}}, "annotation", keys)
        == {}
    )  # noqa: E501
    assert set_options({"annotation": {}}, "annotation", keys) == {}
    assert set_options({"dna": {"edge": "drop"}}, "dna", ["edge"]) == {"edge": "drop"}
    assert set_options({"gtex": {"cell_lines": "keep"}}, "gtex", ["cell_lines"]) == {}
    # embed.compile reaches the embed rules' params only when on
    assert set_options({"embed": {"compile": False}}, "embed", ["compile"]) == {}
    assert set_options({"embed": {"compile": True}}, "embed", ["compile"]) == {"compile": True}
    assert reference_inputs({"report": {"reference_counts": None}}, "x") == {}
    assert reference_inputs({"report": {"reference_counts": {"label": "c"}}}, "x") == {
        "dataset": "results/dataset/x.parquet"
    }


@pytest.mark.parametrize("configfile", ["config/demo.yaml", "config/config.yaml"])
def test_the_shipped_configs_set_no_new_option(configfile):
    """Neither shipped config sets an issue-9 option: their rules keep the params they had,
    so no result built before the options existed reruns (params are compared by value)."""
    import yaml

    from isoflow.workflow import reference_inputs, set_options

    # as written: the keys validate would fill hold the schema default, which set_options skips
    config = yaml.safe_load((Path(__file__).parents[2] / configfile).read_text())
    for section, keys in NEW_OPTIONS.items():
        want = {}
        if configfile == "config/config.yaml" and section == "embed":
            # the one exception, on purpose: the full config compiles its forwards (1.75-6.7x
            # on an H200, docs/benchmarks.md), so its caches are built anew
            want = {"compile": True}
        assert set_options(config, section, keys) == want
    assert reference_inputs(config, "x") == {}


NEW_OPTIONS = {
    "annotation": ["gene_types", "exclude_contigs"],
    "gtex": ["cell_lines"],
    "dna": ["edge"],
    "report": ["reference_counts"],
    "embed": ["shard_mb", "precision", "batch_letters", "compile"],
}


def test_shard_mb_is_no_embed_param_the_options_that_change_values_are():
    """embed.shard_mb only splits the same rows over other shard files (test_embed: the same
    values whatever the shard size), so it is not a param of the embed rules (before: setting
    it rebuilt every cache and retrained every run); the jobs read it from the config.
    precision, batch_letters and compile change the stored values and stay params."""
    import re

    text = (REPO / "rules" / "encoders.smk").read_text()
    lists = re.findall(r'set_options\(\s*config,\s*"embed",\s*\[([^\]]*)\]', text)
    assert len(lists) == 4  # embed, embed_positional, embed_shared, embed_part
    for keys in lists:
        assert re.findall(r'"(\w+)"', keys) == ["precision", "batch_letters", "compile"]
    for script in ("embed.py", "embed_pooled.py", "embed_shared.py"):
        assert (
            "shard_mb=embed_shard_mb(snakemake.config)" in (REPO / "scripts" / script).read_text()
        )
    assert workflow.embed_shard_mb({}) == 1024
    assert workflow.embed_shard_mb({"embed": {"shard_mb": 64}}) == 64


def test_the_embed_params_hold_the_versions_the_store_digest_holds(monkeypatch):
    """Every embed rule records torch's and the encoder family's package versions as a
    param (workflow.embed_packages), the ones isoflow.embed.package_versions puts in the
    store digest: after `pip install -U transformers` Snakemake reruns the NT caches (params
    trigger), and only theirs. tests/workflow/test_dryrun.py checks the rerun itself."""
    from importlib import metadata

    from isoflow.embed import frozen_encoder, package_versions
    from isoflow.model import registry
    from isoflow.model.encoders import spec_from_config

    text = (REPO / "rules" / "encoders.smk").read_text()
    # embed, embed_positional, embed_shared, embed_part and the two gathers
    assert text.count("packages=partial(embed_packages, config=config)") == 6
    config = demo_config()
    for name in ("enformer", "nucleotide_transformer", "esm2"):
        got = workflow.embed_packages(SimpleNamespace(encoder=name), config)
        encoder = frozen_encoder(name, spec_from_config(config, name))
        assert got == {"torch": metadata.version("torch"), **package_versions(encoder)}
        assert list(got) == sorted(got) and None not in got.values()
    assert set(workflow.embed_packages(SimpleNamespace(encoder="esm2"), config)) == {
        "fair-esm",
        "torch",
    }

    versions = {"transformers": "99.0"}
    monkeypatch.setattr(
        registry, "installed_version", lambda name: versions.get(name, metadata.version(name))
    )
    monkeypatch.setattr(workflow, "installed_version", registry.installed_version)
    nt = workflow.embed_packages(SimpleNamespace(encoder="nucleotide_transformer"), config)
    assert nt["transformers"] == "99.0"
    esm2 = workflow.embed_packages(SimpleNamespace(encoder="esm2"), config)
    assert "transformers" not in esm2


def test_the_embed_store_options_reach_the_jobs_not_the_params():
    """embed.store and embed.store_keep decide whether a cache comes from the store and what
    the store keeps, never a stored byte: read by each embed script from the config, no
    param of the rules (setting them reruns nothing)."""
    text = (REPO / "rules" / "encoders.smk").read_text()
    assert "store" not in " ".join(
        re.findall(r'set_options\(\s*config,\s*"embed",\s*\[([^\]]*)\]', text)
    )
    for script in ("embed.py", "embed_pooled.py", "embed_shared.py"):
        assert "**embed_store_options(snakemake.config)" in (REPO / "scripts" / script).read_text()
    assert workflow.embed_store_options({}) == {"store_reuse": True, "store_keep": 0}
    assert workflow.embed_store_options({"embed": {"store": False, "store_keep": 1}}) == {
        "store_reuse": False,
        "store_keep": 1,
    }


def test_split_settings_hold_a_scheme_s_own_key_only_under_that_scheme():
    """split.locus_tss_distance (added with the locus scheme) reaches the splits rule and the
    export params only under the locus scheme: the gene and chrom splits, and the bundles
    made from them, do not hold it, so editing the distance reruns none of them. Keys
    sorted (Snakemake compares their repr: the config's order must not count)."""
    section = {"scheme": "gene", "valid_fraction": 0.1, "salt": "x", "locus_tss_distance": 1000}
    config = {"split": section}
    gene = {"scheme": "gene", "valid_fraction": 0.1, "salt": "x"}
    assert repr(workflow.split_settings(config)) == repr(dict(sorted(gene.items())))
    assert workflow.split_settings(config, "chrom") == {"scheme": "gene"}
    assert workflow.split_settings({"split": {**section, "locus_tss_distance": 5}}) == gene
    assert workflow.split_settings(config, "locus") == section
    locus = {"split": {**section, "scheme": "locus"}}
    assert workflow.split_settings(locus)["locus_tss_distance"] == 1000
    assert workflow.bundle_settings(config, [])["split"] == gene
    assert workflow.bundle_settings(locus, [])["split"] == locus["split"]


def test_split_settings_hold_only_the_keys_the_scheme_reads():
    """Each scheme's splits rule (and the bundles made from it) holds the split keys that
    scheme reads (isoflow.splits.split_transcripts): editing valid_chroms under locus, or salt and
    the fractions under chrom, reruns nothing (valid_chroms under the demo's locus scheme
    replanned the splits, dataset, embeds, runs, exports and reports: 20 jobs)."""
    section = {
        "scheme": "locus",
        "locus_tss_distance": 1000,
        "valid_fraction": 0.15,
        "test_fraction": 0.2,
        "salt": "x",
        "valid_chroms": ["chr2"],
        "test_chroms": ["chr3"],
    }
    config = {"split": section}
    common = {"valid_fraction": 0.15, "test_fraction": 0.2, "salt": "x"}
    chrom = {"valid_chroms": ["chr2"], "test_chroms": ["chr3"]}
    expected = {
        "gene": {"scheme": "locus", **common},
        "locus": {"scheme": "locus", "locus_tss_distance": 1000, **common},
        "chrom": {"scheme": "locus", **chrom},
    }
    for scheme, settings in expected.items():
        assert workflow.split_settings(config, scheme) == settings, scheme
    assert workflow.split_settings(config) == expected["locus"]
    edited = {"split": {**section, "valid_chroms": ["chr1"], "test_chroms": []}}
    assert workflow.split_settings(edited) == workflow.split_settings(config)
    assert workflow.bundle_settings(edited, [])["split"] == expected["locus"]
    as_chrom = {"split": {**section, "scheme": "chrom"}}
    moved = {"split": {**as_chrom["split"], "salt": "y", "valid_fraction": 0.3}}
    assert workflow.split_settings(moved) == workflow.split_settings(as_chrom)
    assert workflow.split_settings(as_chrom) == {"scheme": "chrom", **chrom}
    assert workflow.bundle_settings(moved, [])["split"] == {"scheme": "chrom", **chrom}


def test_every_split_key_names_the_schemes_that_read_it():
    """SPLIT_KEY_SCHEMES covers every split key of the schema but the scheme, each one a
    keyword of split_transcripts, under schemes the schema knows: a key added to the schema
    without its schemes would reach no splits rule, and change no split."""
    import inspect

    from isoflow.config import load_schema
    from isoflow.splits import SCHEMES, split_transcripts

    keys = load_schema(str(workflow.SCHEMA))["properties"]["split"]["properties"]
    assert set(workflow.SPLIT_KEY_SCHEMES) == set(keys) - {"scheme"}
    assert set(workflow.SPLIT_KEY_SCHEMES) <= set(inspect.signature(split_transcripts).parameters)
    for schemes in workflow.SPLIT_KEY_SCHEMES.values():
        assert schemes and set(schemes) <= set(SCHEMES)


def test_embed_threads_by_encoder_else_two():
    def threads(name, **resources):
        return workflow.embed_threads(SimpleNamespace(encoder=name), {"resources": resources})

    assert threads("enformer") == workflow.EMBED_THREADS == 2
    assert threads("esm2", embed_threads={"esm2": 1, "enformer": 4}) == 1
    assert threads("enformer", embed_threads={"esm2": 1, "enformer": 4}) == 4
    assert threads("nucleotide_transformer", embed_threads={"esm2": 1}) == 2


def test_embed_mem_mb_is_the_shard_budget_plus_the_encoder():
    from isoflow.model.registry import ENCODER_HOST_MB, IMPORT_MB

    def mem(name, **config):
        return workflow.embed_mem_mb(SimpleNamespace(encoder=name), config)

    def rounded(mb):
        return -(-mb // 100) * 100

    enformer = {"enformer": {"source": "pretrained"}}
    # ceil(1.25 * (1024 + 3891)) + 2048 = 8192 -> 8200
    assert mem("enformer", encoders=enformer, resources={"gpu": 1}) == 8200
    bigger = mem("enformer", encoders=enformer, resources={"gpu": 1}, embed={"shard_mb": 4096})
    assert bigger == 12100  # 8192 + 1.25 * 3072 = 12032, rounded up to 100 MB
    host = ENCODER_HOST_MB["enformer"]
    per_item = host["real"] - host["weights"] - IMPORT_MB  # activations grow with the batch
    on_cpu = mem("enformer", encoders=enformer, resources={"gpu": 0})
    assert on_cpu == rounded(-(-1.25 * (1024 + host["real"] + 7 * per_item) // 1))
    # a tiny encoder: its measured peak at the demo's batch
    tiny = {"esm2": {"source": "tiny", "embed_batch_size": 64}}
    assert mem("esm2", encoders=tiny) == rounded(-(-1.25 * (1024 + 573) // 1))
    with pytest.raises(InputError, match="unknown encoder"):
        mem("nope", encoders={"nope": {}})


def test_a_job_loading_bundles_has_the_memory_of_their_encoders():
    """Rules export_model/export_models, score_constructs, explain, finetune (one bundle at a
    time) and design (all at once): the encoders a run loads, as embed_mem_mb counts them,
    the interpreter once, an allowance for the job's own data, the GPU's host share."""
    from isoflow.model.registry import ENCODER_HOST_MB, IMPORT_MB

    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    experiments = expand_experiments(full)  # dna+rna+protein: Enformer, NT, ESM-2, real size
    encoders = sum(
        ENCODER_HOST_MB[f]["real"] for f in ("enformer", "nucleotide_transformer", "esm2")
    )
    loaded = encoders - 2 * IMPORT_MB + workflow.BUNDLE_JOB_MB
    expected = -(-(-(-1.25 * loaded // 1) + workflow.GPU_HOST_MB) // 100) * 100
    assert workflow.bundle_mem_mb(full, experiments.values()) == expected == 12700
    (run,) = experiments
    assert workflow.export_mem_mb(SimpleNamespace(run=run), full, experiments) == expected
    assert workflow.bundle_mem_mb(full, [*experiments.values()] * 3) == expected  # in turn
    together = workflow.bundle_mem_mb(full, [*experiments.values()] * 3, together=True)
    loaded = IMPORT_MB + 3 * (encoders - 3 * IMPORT_MB) + workflow.BUNDLE_JOB_MB
    assert together == -(-(-(-1.25 * loaded // 1) + workflow.GPU_HOST_MB) // 100) * 100
    demo = demo_config()  # tiny encoders, no GPU: under the 4000 MB the profile gave before
    demo_runs = expand_experiments(demo)
    assert (
        workflow.bundle_mem_mb(demo, [demo_runs["dna+rna+protein_enformer_cross_attention_s0"]])
        == 3800
    )
    dna_only = workflow.bundle_mem_mb(demo, [demo_runs["dna_enformer_cross_attention_s0"]])
    assert dna_only < 3800


def test_positional_runs_read_the_positional_caches():
    config = {"model": {"cached_modalities": ["dna", "rna"]}}
    exp = {"modalities": ["dna", "rna"], "pooling": "positional"}
    inputs = workflow.train_inputs(config, exp, "d.parquet", "g.fa")
    assert inputs["cache_dna"] == "results/embeddings/enformer-positional"
    assert inputs["cache_rna"] == "results/embeddings/nucleotide_transformer-positional"
    assert workflow.cache_dir("esm2") == "results/embeddings/esm2"
    pooling = workflow.embed_pooling({"embed": {"stride_aa": 8}})
    assert pooling == {"mode": "positional", "dna_crop_bins": 128, "stride_nt": 96, "stride_aa": 8}


def test_embed_jobs_scatter_into_parts_the_gather_reads_in_order():
    from types import SimpleNamespace

    wildcards = SimpleNamespace(encoder="esm2", pooling="positional")
    assert workflow.embed_parts(wildcards, pooling="positional", jobs=3) == [
        f"results/embeddings/.parts/esm2/positional/{i}" for i in range(3)
    ]
    assert workflow.part_pooling(wildcards, {})["mode"] == "positional"
    assert workflow.part_pooling(SimpleNamespace(pooling="adaptive"), {}) is None


EXPLAIN_RUN = {"dna_enformer_cross_attention_s0": {"modalities": ["dna"]}}


def test_explain_section_errors_at_parse_not_in_the_job():
    # a transcript with transcripts_for_attention: 0 has no attention set (0 means the
    # constructs of explain.construct): the explain job used to fail after the whole DAG ran
    config = {"model": "dna_enformer_cross_attention_s0", "transcript": "ENST1.1"}
    paths = workflow.explain_paths({"explain": config}, EXPLAIN_RUN)
    assert paths["attention"].endswith("/ENST1.1.attention.tsv")
    with pytest.raises(InputError, match="explain.transcripts_for_attention: 0 averages"):
        workflow.explain_paths({"explain": {**config, "transcripts_for_attention": 0}}, EXPLAIN_RUN)
    construct = {"model": "dna_enformer_cross_attention_s0", "construct": "c.tsv", "id": "c1"}
    assert workflow.explain_paths(
        {"explain": {**construct, "transcripts_for_attention": 0}}, EXPLAIN_RUN
    )
    with pytest.raises(InputError, match="give either construct and id, or transcript"):
        workflow.explain_paths({"explain": {**construct, "transcript": "ENST1.1"}}, EXPLAIN_RUN)
    with pytest.raises(InputError, match="not a configured run"):
        workflow.explain_paths({"explain": {**config, "model": "other"}}, EXPLAIN_RUN)


def test_explain_outputs_a_transcripts_tracks_as_bedgraphs():
    # one bedGraph per logo track, named as isoflow explain writes it; none for a construct
    config = {"model": "dna_enformer_cross_attention_s0", "transcript": "ENST1.1"}
    paths = workflow.explain_paths({"explain": config}, EXPLAIN_RUN)
    prefix = "results/explain/dna_enformer_cross_attention_s0/ENST1.1"
    assert paths["bedgraph_0"] == f"{prefix}.ism.mean.bedGraph"
    tissues = {**config, "tissues": ["Adipose Tissue", "mean", "Adipose Tissue"]}
    paths = workflow.explain_paths({"explain": tissues}, EXPLAIN_RUN)
    graphs = {k: v for k, v in paths.items() if k.startswith("bedgraph")}
    assert graphs == {
        "bedgraph_0": f"{prefix}.ism.Adipose_Tissue.bedGraph",
        "bedgraph_1": f"{prefix}.ism.mean.bedGraph",
    }
    construct = {"model": "dna_enformer_cross_attention_s0", "construct": "c.tsv", "id": "c1"}
    assert not any(
        "bedGraph" in p
        for p in workflow.explain_paths({"explain": construct}, EXPLAIN_RUN).values()
    )


def test_bundle_runs_are_every_bundle_a_section_asks_for_once():
    runs = {f"r{i}": {"modalities": ["rna"]} for i in range(5)}
    config = {
        "models": {"export": ["r0", "r1"]},
        "constructs": {"table": "c.tsv", "models": ["r1", "r2"]},
        "design": {"construct": "c.tsv", "id": "x", "models": ["r3"]},
        "explain": {"model": "r4", "construct": "c.tsv", "id": "x"},
        "finetune": {"table": "m.tsv", "model": "r0"},
    }
    assert workflow.bundle_runs(config, runs) == ["r0", "r1", "r2", "r3", "r4"]
    # a section switched off asks for nothing
    off = {**config, "constructs": {"table": None}, "explain": None, "finetune": None}
    assert workflow.bundle_runs(off, runs) == ["r0", "r1", "r3"]
    assert workflow.bundle_runs({}, runs) == []
    # the design's held-out bundles too: rule export_model made them one job each beside
    # export_models' one job for the rest
    held = {**off, "design": {**config["design"], "holdout_runs": ["r4"]}}
    assert workflow.bundle_runs(held, runs) == ["r0", "r1", "r3", "r4"]


def test_export_all_inputs_lists_each_file_once_and_each_runs_own():
    experiments = {
        "a": {"modalities": ["dna", "rna"]},
        "b": {"modalities": ["rna"], "pooling": "positional"},
    }
    config = {
        "model": {"cached_modalities": ["dna", "rna"], "rna_encoder": "nucleotide_transformer"},
    }
    files, per_run = workflow.export_all_inputs(config, experiments, ["a", "b"], "d.pq", "g.fa")
    for run in ("a", "b"):
        own = workflow.export_inputs(SimpleNamespace(run=run), config, experiments, "d.pq", "g.fa")
        assert per_run[run] == own
        assert set(own.values()) <= set(files)
    assert len(files) == len(set(files)) and files.count("d.pq") == 1
    assert per_run["a"]["cache_rna"] != per_run["b"]["cache_rna"]  # its own pooling's cache


def test_prefetch_reaches_the_train_job_but_not_its_params():
    # prefetch_batches changes no output, so setting it (config.yaml: 2, the demo: 0) reruns
    # no train job; the job reads it from the config instead
    config = {"train": {"lr": 0.1, "prefetch_batches": 2}, "model": {}}
    settings = workflow.rule_settings(config, [])
    assert settings["train"] == {"lr": 0.1}
    assert workflow.job_settings(settings, config)["train"] == {"lr": 0.1, "prefetch_batches": 2}
    assert workflow.job_settings(settings, {"train": {"lr": 0.1}})["train"] == {"lr": 0.1}
    assert workflow.rule_settings({"train": {"prefetch_batches": 0}}, [])["train"] == {}


def test_cuda_graph_enters_the_train_params_only_when_set():
    # train.cuda_graph: false (config.yaml's and the demo's) is the behaviour from before the
    # key, so writing it reruns no train job; true changes the weights (padding, captured
    # kernels) and so the train jobs' params
    base = {"train": {"lr": 0.1}, "model": {}}
    off = {"train": {"lr": 0.1, "cuda_graph": False}, "model": {}}
    on = {"train": {"lr": 0.1, "cuda_graph": True}, "model": {}}
    assert workflow.rule_settings(off, []) == workflow.rule_settings(base, [])
    assert workflow.rule_settings(on, [])["train"] == {"lr": 0.1, "cuda_graph": True}


def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def test_an_embed_job_depends_on_its_encoder_and_its_modality_limits_only():
    """The embed rules' params (workflow.embed_settings): the encoder's own spec, and the
    rna / protein section only for an RNA / protein encoder: editing another encoder, or the
    RNA limits for a DNA encoder, rebuilds no cache."""
    config = demo_config()
    enformer = workflow.embed_settings(SimpleNamespace(encoder="enformer"), config)
    assert enformer == {
        "encoders": {"enformer": with_encoder_defaults(config["encoders"]["enformer"])}
    }
    nt = workflow.embed_settings(SimpleNamespace(encoder="nucleotide_transformer"), config)
    assert set(nt) == {"encoders", "rna"} and list(nt["encoders"]) == ["nucleotide_transformer"]
    esm2 = workflow.embed_settings(SimpleNamespace(encoder="esm2"), config)
    assert set(esm2) == {"encoders", "protein"} and esm2["protein"]["max_aa"] == 1000
    nt_dna = workflow.embed_settings(SimpleNamespace(encoder="nt_dna"), config)
    assert set(nt_dna) == {"encoders"}  # NT reading DNA: no RNA limits

    edited = demo_config()
    edited["encoders"]["borzoi"]["pool_to"] = 4
    edited["rna"] = {"max_nt": 600}
    edited["protein"] = {"max_aa": 50}
    for name in ("enformer", "nt_dna"):
        wildcards = SimpleNamespace(encoder=name)
        assert workflow.embed_settings(wildcards, edited) == workflow.embed_settings(
            wildcards, config
        )
    wildcards = SimpleNamespace(encoder="nucleotide_transformer")
    assert workflow.embed_settings(wildcards, edited)["rna"]["max_nt"] == 600


def test_a_cache_rebuilds_for_no_spec_key_its_content_does_not_read():
    """finetune_last, gradient_checkpointing and lora (training-side: every cache is made
    frozen) and, for a positional cache alone, pool_to are not in the embed params; the
    shipped configs' params hold the spec as with_encoder_defaults fills it (keys sorted)."""
    for config in (demo_config(), yaml.safe_load((REPO / "config" / "config.yaml").read_text())):
        for name, spec in config["encoders"].items():
            wildcards = SimpleNamespace(encoder=name)
            before = workflow.sorted_keys(with_encoder_defaults(spec))
            for pooling in (None, "positional"):  # rule embed, rule embed_positional
                got = workflow.embed_settings(wildcards, config, pooling)["encoders"][name]
                if pooling is None or before["pool_to"] == 64:
                    assert repr(got) == repr(before)
    config = demo_config()
    edited = demo_config()
    edited["encoders"]["esm2"].update(
        finetune_last=2, gradient_checkpointing=True, lora={"r": 4}, pool_to=3
    )
    esm2 = SimpleNamespace(encoder="esm2")
    adaptive = workflow.embed_settings(esm2, edited)
    assert adaptive != workflow.embed_settings(esm2, config)  # pool_to 3: another cache
    assert adaptive["encoders"]["esm2"]["pool_to"] == 3
    assert adaptive["encoders"]["esm2"]["finetune_last"] == 0
    assert not {"gradient_checkpointing", "lora"} & set(adaptive["encoders"]["esm2"])
    positional = [workflow.embed_settings(esm2, c, "positional") for c in (edited, config)] + [
        workflow.embed_settings(SimpleNamespace(encoder="esm2", pooling="positional"), edited)
    ]
    assert positional[0] == positional[1] == positional[2]  # rule embed_part's wildcard too


def test_the_embed_params_do_not_depend_on_the_configs_key_order():
    """Snakemake records and compares params by their repr (its persistence module), so key
    order counts: finetune_last or gradient_checkpointing written in the config of an encoder
    a run reads (with_encoder_defaults appends them when the config leaves them out, as
    demo.yaml does) gave other params, "Params have changed", and the cache rebuilt. The
    rna section in another order likewise."""
    config = demo_config()
    edited = demo_config()
    edited["encoders"]["nucleotide_transformer"]["finetune_last"] = 1
    edited["encoders"]["enformer"].update(finetune_last=1, gradient_checkpointing=True)
    edited["rna"] = dict(reversed(list(config["rna"].items())))
    for name in ("nucleotide_transformer", "enformer"):
        for pooling in (None, "positional"):
            wildcards = SimpleNamespace(encoder=name)
            got = workflow.embed_settings(wildcards, edited, pooling)
            assert repr(got) == repr(workflow.embed_settings(wildcards, config, pooling))
    reordered = demo_config()
    spec = reordered["encoders"]["esm2"]
    reordered["encoders"]["esm2"] = dict(reversed(list(spec.items())))
    esm2 = SimpleNamespace(encoder="esm2")
    assert repr(workflow.embed_settings(esm2, reordered)) == repr(
        workflow.embed_settings(esm2, config)
    )


def test_no_rules_params_depend_on_the_configs_key_order():
    """Snakemake compares params by repr: the params the rules take from these functions are
    the same for a config written in another key order (locus_tss_distance placed elsewhere
    replanned the splits and everything after them). tests/workflow/test_params_order.py
    checks every job of the DAG; this, the functions, fast."""
    config = demo_config()
    counts = {"train": 3, "valid": 1, "test": 1}  # a dict-valued option (set_options)
    config["report"]["reference_counts"] = {"label": "x", "genes": counts, "transcripts": counts}
    other = reversed_keys(config)
    experiments, reordered = expand_experiments(config), expand_experiments(other)
    assert list(experiments) == list(reordered)  # the runs' order is the list's
    run = SimpleNamespace(run=next(iter(experiments)))
    for build in (
        lambda c, e: workflow.split_settings(c),
        lambda c, e: workflow.split_settings(c, "gene"),
        lambda c, e: workflow.rule_settings(c, e.values()),
        lambda c, e: workflow.run_settings(run, c, e),
        lambda c, e: workflow.bundle_settings(c, e.values()),
        lambda c, e: workflow.run_bundle_settings(run, c, e),
        lambda c, e: workflow.rule_experiment(run, e),
        lambda c, e: workflow.experiment_params(e),
        lambda c, e: workflow.grouped_train_runs(c, e, "d.parquet", "g.fa"),
        lambda c, e: workflow.finetune_construct_options(c),
        lambda c, e: workflow.set_options(c, "report", ["reference_counts"]),
    ):
        assert repr(build(config, experiments)) == repr(build(other, reordered))
    assert list(workflow.experiment_params(experiments)) == list(experiments)


def test_the_job_spec_from_the_embed_params_is_the_configs():
    """What the embed scripts build from their params is the spec the config gives (the one
    the cache records and training checks), limits folded in."""
    from isoflow.model.encoders import spec_from_config

    config = demo_config()
    for name in config["encoders"]:
        settings = workflow.embed_settings(SimpleNamespace(encoder=name), config)
        assert spec_from_config(settings, name) == spec_from_config(config, name)


def test_train_and_export_params_hold_only_the_encoders_their_runs_read():
    config = demo_config()
    experiments = expand_experiments(config)
    dna_run = "dna_enformer_cross_attention_s0"
    rna_run = "rna_enformer_cross_attention_s0"
    one = workflow.run_settings(SimpleNamespace(run=dna_run), config, experiments)
    assert list(one["encoders"]) == ["enformer"]
    rna = workflow.run_settings(SimpleNamespace(run=rna_run), config, experiments)
    assert list(rna["encoders"]) == ["nucleotide_transformer"]
    every = workflow.rule_settings(config, experiments.values())  # train_jobs: one
    assert list(every["encoders"]) == ["enformer", "esm2", "nucleotide_transformer"]  # sorted
    bundle = workflow.run_bundle_settings(SimpleNamespace(run=dna_run), config, experiments)
    assert list(bundle["encoders"]) == ["enformer"] and bundle["dna"] == config["dna"]
    edited = demo_config()
    edited["encoders"]["borzoi"]["pool_to"] = 4
    edited["encoders"]["esm2"]["pool_to"] = 4
    assert workflow.rule_settings(edited, [experiments[dna_run]]) == one
    # the RNA and protein sections and encoder names shape no DNA-only run: editing them
    # retrains none (the fingerprint leaves them out too); a run reading RNA retrains
    edited["rna"] = {**edited.get("rna", {}), "max_nt": 600}
    edited["protein"] = {**edited.get("protein", {}), "max_aa": 30}
    edited["model"] = {**edited["model"], "protein_encoder": "another"}
    assert workflow.rule_settings(edited, [experiments[dna_run]]) == one
    assert workflow.rule_settings(edited, [experiments[rna_run]]) != rna
    assert workflow.rule_settings(edited, experiments.values()) != every
    # a bundle's manifest records both limits as configured, whatever the run reads
    edited_bundle = workflow.run_bundle_settings(SimpleNamespace(run=dna_run), edited, experiments)
    assert edited_bundle["rna"]["max_nt"] == 600 and edited_bundle["protein"]["max_aa"] == 30


def test_genome_index_declares_the_gzi_of_a_bgzip_fasta():
    assert workflow.fasta_index_files("resources/demo/genome.fa") == [
        "resources/demo/genome.fa.fai"
    ]
    assert workflow.fasta_index_files("/data/GRCh38.fa.gz") == [
        "/data/GRCh38.fa.gz.fai",
        "/data/GRCh38.fa.gz.gzi",
    ]


def test_genome_index_leaves_an_indexed_fasta_of_the_users_alone(tmp_path, monkeypatch):
    # Before: the rule always declared the .fai beside any FASTA, so Snakemake remade (and
    # wrote beside) a user's read-only reference whose index was already there.
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "ref" / "own.fa"
    own.parent.mkdir()
    own.write_text(">c1\nACGT\n")
    assert workflow.genome_index_outputs(str(own)) == [f"{own}.fai"]  # absent: built
    Path(f"{own}.fai").write_text("c1\t4\t4\t4\t5\n")
    assert workflow.genome_index_outputs(str(own)) == []  # there: only read
    assert workflow.genome_index_outputs("ref/own.fa") == []  # relative to the working dir
    # a bgzip FASTA needs its .gzi too: with only the .fai there, both are built
    packed = tmp_path / "ref" / "own.fa.gz"
    packed.write_bytes(b"")
    Path(f"{packed}.fai").write_text("")
    assert workflow.genome_index_outputs(str(packed)) == [f"{packed}.fai", f"{packed}.gzi"]
    Path(f"{packed}.gzi").write_bytes(b"")
    assert workflow.genome_index_outputs(str(packed)) == []
    # the workflow's own FASTAs (downloaded, the demo's): the index stays the rule's output
    for made in ("resources/genome/GRCh38.fa", "resources/demo/genome.fa"):
        Path(made).parent.mkdir(parents=True)
        Path(made).write_text(">c1\nACGT\n")
        Path(f"{made}.fai").write_text("c1\t4\t4\t4\t5\n")
        assert workflow.genome_index_outputs(made) == [f"{made}.fai"]
        assert workflow.genome_index_outputs(str(tmp_path / made)) == [f"{tmp_path / made}.fai"]


@pytest.mark.parametrize("path", ["resources/models/esm2/", "./resources/models/esm2"])
def test_a_weights_path_is_normalised_to_the_folder_the_download_rule_writes(path):
    # `path: resources/models/esm2/` passed the parse-time folder check, then asked Snakemake
    # for resources/models/esm2//isoflow_source.json, which no rule makes
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["encoders"]["esm2"]["path"] = path
    assert workflow.weights_dir("esm2", config["encoders"]["esm2"]) == "resources/models/esm2"
    inputs = workflow.embed_inputs(SimpleNamespace(encoder="esm2"), config, "d.parquet", "g.fa")
    assert inputs["weights"] == "resources/models/esm2/isoflow_source.json"


# --- the DNA a run reads (a reviewer's finding: the DNA-encoder ablation compares spans) ----


def shipped(*names: str) -> dict:
    """The shipped config files (under config/) merged as Snakemake merges them."""
    return merged_configs(*(f"config/{name}" for name in names))


def spans_by_encoder(config: dict) -> dict[tuple[str, str], dict]:
    spans = {}
    for experiment in expand_experiments(config).values():
        span = workflow.dna_span(config, experiment)
        if span:
            spans[(span["encoder"], span["mode"])] = span
    return spans


def test_dna_span_of_the_ablation_s_encoders_under_positional_pooling():
    """config.yaml's positional cache keeps embed.dna_crop_bins (128) tokens whatever the
    encoder: Enformer's 128 bp bins 16,384 bp, NT's 6-mers 768 bp of the 12,282 bp NT reads,
    Borzoi's 32 bp bins 4,096 bp; the adaptive pooling run averages Enformer's 896 bins."""
    spans = spans_by_encoder(shipped("config.yaml", "ablations.yaml"))
    enformer = spans[("enformer", "positional")]
    assert (enformer["input_bp"], enformer["tokens"], enformer["letters"]) == (196_608, 896, 128)
    assert (enformer["kept_tokens"], enformer["span_bp"]) == (128, 16_384)
    assert enformer["text"].endswith("the cache keeps the central 128: 16,384 bp around the TSS")
    nt = spans[("nt_dna", "positional")]
    assert (nt["input_bp"], nt["tokens"], nt["span_bp"]) == (12_282, 2_047, 768)
    assert "reads 12,282 bp (the window's centre)" in nt["text"]
    adaptive = spans[("enformer", "adaptive")]
    assert (adaptive["span_bp"], adaptive["slots"]) == (114_688, 64)
    assert "averaged into 64 slots of ~1,792 bp" in adaptive["text"]
    borzoi = spans_by_encoder(shipped("config.yaml", "borzoi.yaml"))[("borzoi", "positional")]
    assert (borzoi["input_bp"], borzoi["tokens"], borzoi["span_bp"]) == (524_288, 6_144, 4_096)


def test_dna_span_read_raw_and_of_tiny_encoders():
    config = shipped("demo.yaml")
    spans = spans_by_encoder(config)
    # the demo's tiny Enformer: target_length 8 of 2,048 / 128 = 16 bins; crop 4 of them
    assert spans[("enformer", "positional")]["span_bp"] == 512
    assert spans[("enformer", "adaptive")]["span_bp"] == 1_024
    raw = {**config, "model": {**config["model"], "cached_modalities": ["rna", "protein"]}}
    span = workflow.dna_span(raw, {"modalities": ["dna"], "dna_encoder": "nt_dna"})
    # a tiny NT on the 2,048 bp window: the 341 whole 6-mers around the TSS (2,046 bp; the
    # 2 letters left over are not read as tokens after the last 6-mer)
    assert (span["mode"], span["input_bp"], span["tokens"], span["span_bp"]) == (
        "raw",
        2_046,
        341,
        2_046,
    )
    assert "reads 2,046 bp (the window's centre), outputs 341 tokens of 6 bp" in span["text"]
    assert workflow.dna_span(config, {"modalities": ["rna"]}) is None
    # a family with no TOKEN_GEOMETRY line: no span stated
    odd = {"encoders": {"x": {"class": "esm2", "modality": "dna"}}}
    assert workflow.dna_span(odd, {"modalities": ["dna"], "dna_encoder": "x"}) is None
    # a pretrained Enformer's spec target_length caps its bins
    enformer = {"source": "pretrained", "target_length": 200, "path": "resources/models/e"}
    pretrained = {**config, "dna": {"window": 196_608}, "encoders": {"enformer": enformer}}
    span = workflow.dna_span(pretrained, {"modalities": ["dna"], "pooling": "adaptive"})
    assert (span["tokens"], span["span_bp"]) == (200, 25_600)


@pytest.mark.parametrize(
    ("window", "spec", "name", "expected"),
    [
        # pretrained Enformer, 65,536 bp: 512 bins, not the 896 it returns; dna_span said 512
        # tokens, and the train job failed on its first batch with a bare ValueError
        (
            65_536,
            {"source": "pretrained", "use_tf_gamma": False},
            "enformer",
            "config:dna.window: 65,536 bp gives 512 bins of 128 bp, fewer than the 896",
        ),
        (  # a family without its own check: dna_span's line
            2048,
            {"source": "pretrained", "input_length": 2048, "bins_to_return": 6144},
            "borzoi",
            "config:dna.window: 2,048 bp gives 64 tokens of 32 bp, fewer than the 6,144 "
            "(bins_to_return) encoder borzoi returns: set dna.window to at least 196608",
        ),
    ],
)
def test_a_window_too_short_for_the_encoder_is_refused_not_clamped(window, spec, name, expected):
    config = {"dna": {"window": window}, "encoders": {name: spec}}
    experiment = {"modalities": ["dna"], "dna_encoder": name}
    with pytest.raises(InputError) as err:
        workflow.dna_span(config, experiment)
    assert str(err.value).startswith(expected), str(err.value)
    if name == "enformer":  # and the train rule's input function stops the DAG
        with pytest.raises(InputError, match="fewer than the 896"):
            workflow.train_inputs(config, experiment, "dataset.parquet", "genome.fa")


def test_ablation_dna_spans_only_for_factors_whose_levels_can_differ_in_it():
    config = shipped("config.yaml", "ablations.yaml")
    experiments = expand_experiments(config)
    spans = workflow.ablation_dna_spans(config, experiments, "dna_encoder")
    assert set(spans) == {r for r, e in experiments.items() if "dna" in e["modalities"]}
    assert workflow.ablation_dna_spans(config, experiments, "pooling") == spans
    assert workflow.ablation_dna_spans(config, experiments, "aggregator") == {}
