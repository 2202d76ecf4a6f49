"""The full-reproduction DAG resolves (no downloads) with the SLURM profile, and --lint is clean.

A dry run through `--profile profiles/slurm` must not submit anything: a fake `sbatch` first
on PATH records any call.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers.dryrun import parse_dry_run
from helpers.paths import REPO, SNAKEMAKE
from isoflow.workflow import schema_default, train_cpus

SLURM_PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason=f"{SNAKEMAKE} missing")


def snakemake(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )


def rule_names(*configfiles: str | Path) -> set[str]:
    done = snakemake("--list-rules", "--configfile", *configfiles)
    assert done.returncode == 0, done.stderr[-3000:]
    # One rule a line, its docstring after it in parentheses (continuation lines indented).
    return {match[1] for match in re.finditer(r"^(\w+)(?: \(|$)", done.stdout, flags=re.M)}


@pytest.fixture(scope="module")
def full_dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    """Dry run of config/config.yaml through the SLURM profile, with a recording fake sbatch.

    `--cores` is given only so the printout shows threads uncapped (a dry run caps them at
    --cores, 1 by default; a real cluster run gives no --cores and caps nothing).
    """
    bin_dir = tmp_path_factory.mktemp("fakebin")
    calls = bin_dir / "sbatch-calls"
    for tool in ("sbatch", "srun"):
        fake = bin_dir / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 1\n')
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # An empty working directory: results of an earlier run in the checkout would hide jobs.
    workdir = tmp_path_factory.mktemp("full")
    done = snakemake(
        "-n", "-s", REPO / "Snakefile", "-d", workdir, "--profile", REPO / "profiles" / "slurm",
        "--configfile", REPO / "config" / "config.yaml", "--cores", "1024", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "This was a dry-run" in done.stdout
    return parse_dry_run(done.stdout), calls


@pytest.mark.slow
def test_dry_run_with_the_slurm_profile_submits_nothing(full_dry_run) -> None:
    _, calls = full_dry_run
    assert not calls.exists(), calls.read_text()


@pytest.mark.slow
def test_full_dag_reaches_every_stage(full_dry_run) -> None:
    jobs, _ = full_dry_run
    rules = {job["rule"] for job in jobs}
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # No local inputs in config.yaml: the data comes from the download rules.
    assert config["genome"]["fasta"] is None and config["annotation"]["gtf"] is None
    for stage in ("annotation", "sequences", "targets", "splits", "dataset", "all"):
        assert stage in rules, f"rule {stage} missing from the full DAG: {sorted(rules)}"
    outputs = " ".join(job.get("output", "") for job in jobs)
    assert "results/runs/" in outputs, "no training run in the full DAG"
    assert "resources/" in outputs, "nothing is downloaded in the full DAG"


@pytest.mark.slow
def test_every_cluster_job_has_memory_and_wall_time(full_dry_run) -> None:
    jobs, _ = full_dry_run
    for job in jobs:
        if job["local"]:
            continue
        resources = job["resources"]
        assert int(resources.get("mem_mb", 0)) > 0, f"{job['rule']}: no mem_mb: {resources}"
        assert int(resources.get("runtime", 0)) > 0, f"{job['rule']}: no runtime: {resources}"


def test_rules_leave_cluster_settings_to_the_profile() -> None:
    for smk in sorted((REPO / "rules").glob("*.smk")):
        assert "slurm_" not in smk.read_text(), f"{smk.name} names a slurm_* resource"


def test_each_rule_file_declares_the_localrules_of_its_own_rules() -> None:
    """A `localrules:` entry sits in the file that defines the rule (DESIGN.md, layout)."""
    localrules = re.compile(r"^\s*localrules:\n((?:\s+\w+,?\n)+)", flags=re.M)
    declared = 0
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        defined = set(re.findall(r"^\s*rule (\w+):", text, flags=re.M))
        for block in localrules.findall(text):
            names = set(re.findall(r"\w+", block))
            declared += len(names)
            assert names <= defined, f"{smk.name}: localrules for {names - defined}"
    assert declared, "no localrules found: the pattern no longer matches the rule files"


def test_design_lists_the_isoflow_modules_the_rule_files_import() -> None:
    """DESIGN.md, "Rule files and input functions", names every isoflow module the Snakefile
    and rule files import (and no other): the light ones reading the workflow may load."""
    design = (REPO / "DESIGN.md").read_text()
    sentence = design.split("Rule files import only ", 1)[1].split(", so", 1)[0]
    listed = set(re.findall(r"`(isoflow\.\w+)`", sentence))
    imported = set()
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        found = re.findall(r"^\s*(?:from|import) (isoflow\.\w+)", smk.read_text(), flags=re.M)
        imported.update(found)
    assert "isoflow.workflow" in imported, imported
    assert listed == imported, (sorted(listed - imported), sorted(imported - listed))


@pytest.mark.slow
def test_profile_names_only_rules_that_exist(tmp_path: Path) -> None:
    """A typo in the profile would leave a rule on the defaults: each name is a rule of one
    of the shipped configs (the full run's, or the demo's, also run on a cluster), or of the
    full run with embed.jobs: 2 (rule embed_part, docs/encoders.md)."""
    jobs = tmp_path / "embed_jobs.yaml"
    jobs.write_text("embed: {jobs: 2}\n")
    rules = rule_names("config/config.yaml") | rule_names("config/demo.yaml")
    rules |= rule_names("config/config.yaml", jobs)
    assert "embed_part" in rules, sorted(rules)
    named = set(SLURM_PROFILE.get("set-resources", {})) | set(SLURM_PROFILE.get("set-threads", {}))
    assert named <= rules, f"profile names rules the workflow does not have: {named - rules}"


def test_every_rule_that_can_use_a_gpu_goes_to_the_gpu_partition() -> None:
    """A rule declaring `gpu` (resources.gpu) left to default-resources would be sent to the
    CPU partition asking for a GPU: the profile gives each its own slurm_partition, also
    embed_part (embed.jobs > 1), which the shipped configs do not build. An embed rule (its
    threads are embed_threads) gets the profile's threads, not one CPU."""
    gpu_rules, embed_rules, rule = set(), set(), None
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            start = re.match(r"\s*rule (\w+):", line)
            rule = start[1] if start else rule
            if rule and re.match(r"\s+gpu=", line):
                gpu_rules.add(rule)
            if rule and re.match(r"\s+threads: partial\(embed_threads", line):
                embed_rules.add(rule)
    assert {"train", "embed", "embed_part", "export_model", "explain", "design"} <= gpu_rules
    assert {"embed", "embed_positional", "embed_shared", "embed_part"} <= embed_rules
    routed = {
        rule
        for rule, resources in SLURM_PROFILE["set-resources"].items()
        if "slurm_partition" in resources
    }
    assert gpu_rules <= routed, gpu_rules - routed
    assert embed_rules <= set(SLURM_PROFILE["set-threads"]), embed_rules
    runtimes = {SLURM_PROFILE["set-resources"][rule].get("runtime") for rule in embed_rules}
    assert runtimes == {720}, runtimes


def test_the_gpu_partition_gets_only_rules_that_run_a_model() -> None:
    """The converse (a review of the full DAG: with embed.jobs > 1 the gathers, which only
    link the parts' files, kept the names embed and embed_positional and so queued on the GPU
    partition with 8 threads): every definition of a rule the profile sends to the GPU
    partition declares `gpu`, i.e. runs a model; the gathers have names of their own."""
    definitions: list[tuple[str, bool]] = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            start = re.match(r"\s*rule (\w+):", line)
            if start:
                definitions.append((start[1], False))
            elif definitions and re.match(r"\s+gpu=", line):
                definitions[-1] = (definitions[-1][0], True)
    routed = {
        rule
        for rule, resources in SLURM_PROFILE["set-resources"].items()
        if "slurm_partition" in resources
    }
    no_gpu = sorted({rule for rule, gpu in definitions if rule in routed and not gpu})
    assert not no_gpu, f"sent to the GPU partition without a gpu resource: {no_gpu}"
    names = {rule for rule, _ in definitions}
    assert {"embed_gather", "embed_positional_gather"} <= names - routed, sorted(names)


@pytest.mark.slow
def test_profile_settings_reach_the_jobs(full_dry_run) -> None:
    jobs, _ = full_dry_run
    for job in jobs:
        wanted = SLURM_PROFILE.get("set-resources", {}).get(job["rule"], {})
        for key, value in wanted.items():
            assert job["resources"].get(key) == str(value), (job["rule"], key, job["resources"])
        threads = SLURM_PROFILE.get("set-threads", {}).get(job["rule"])
        if threads is not None:
            assert job.get("threads") == str(threads), (job["rule"], job.get("threads"))


@pytest.mark.slow
def test_train_jobs_reserve_the_cpus_they_use(full_dry_run) -> None:
    """config.yaml's train jobs (num_workers 0, a prefetch thread) ask SLURM for their torch
    threads (resources.model_threads) plus that thread (isoflow.workflow.train_cpus), not
    the 8 CPUs the profile's set-threads gave them."""
    jobs, _ = full_dry_run
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    threads = config["resources"].get("model_threads", schema_default("resources", "model_threads"))
    train = [job for job in jobs if job["rule"] == "train"]
    assert train, "no train job in the full DAG"
    for job in train:
        assert job["threads"] == str(threads), job
        assert job["resources"]["cpus_per_task"] == str(train_cpus(None, threads, config)), job
    assert train_cpus(None, threads, config) == threads + 1


@pytest.mark.slow
def test_only_jobs_asking_for_a_gpu_go_to_the_gpu_partition(tmp_path: Path) -> None:
    """The profile with its EDIT lines filled in (CPU and GPU partitions told apart), the full
    config with embed.jobs: 2: the parts and every other model job go to the GPU partition
    with a GPU, the gathers (no model) to the CPU partition with no GPU and one thread."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "cpus"
    for resources in profile["set-resources"].values():
        if "slurm_partition" in resources:
            resources["slurm_partition"] = "gpus"
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    (tmp_path / "jobs.yaml").write_text("embed: {jobs: 2}\n")
    done = snakemake(
        "-n", "-s", REPO / "Snakefile", "-d", tmp_path / "work", "--profile", tmp_path / "profile",
        "--configfile", REPO / "config" / "config.yaml", tmp_path / "jobs.yaml", "--cores", "1024",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = [job for job in parse_dry_run(done.stdout) if not job["local"]]
    for job in jobs:
        gpu = int(job["resources"].get("gpu", 0)) > 0
        partition = job["resources"].get("slurm_partition")
        assert partition == ("gpus" if gpu else "cpus"), (job["rule"], job["resources"])
    rules = {job["rule"] for job in jobs}
    assert {"embed_part", "embed_positional_gather", "train"} <= rules, sorted(rules)
    gathers = [job for job in jobs if job["rule"].endswith("_gather")]
    assert all(job.get("threads", "1") == "1" for job in gathers), gathers


@pytest.mark.slow
def test_gpu_rules_ask_for_the_configured_gpu(full_dry_run) -> None:
    """config.yaml sets resources.gpu: 1; every rule declaring gpu passes it on, and only they."""
    jobs, _ = full_dry_run
    gpu_jobs = [job for job in jobs if int(job["resources"].get("gpu", 0)) > 0]
    assert gpu_jobs, "no job of the full DAG asks for a GPU"
    assert {job["rule"] for job in gpu_jobs} >= {"train"}
    for job in gpu_jobs:
        assert job["resources"]["gpu"] == "1", job
        assert not job["local"], f"{job['rule']} would run on the submit host"


def test_default_profile_leaves_cluster_threads_alone() -> None:
    """profiles/default is applied on top of --profile profiles/slurm and wins per key: a
    `cores` there caps every cluster job's threads (and so its --cpus-per-task)."""
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert "cores" not in default and "jobs" not in default and "executor" not in default


@pytest.mark.slow
@pytest.mark.parametrize("configfile", ["config/demo.yaml", "config/config.yaml"])
def test_lint_is_clean(configfile: str) -> None:
    done = snakemake("--lint", "--configfile", configfile)
    lints = re.findall(r"^Lints for .*$", done.stdout + done.stderr, flags=re.M)
    assert done.returncode == 0 and not lints, (done.stdout + done.stderr)[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("overlay", ["config/ablations.yaml", "config/borzoi.yaml"])
def test_overlays_resolve_their_dag(overlay: str) -> None:
    """The ablation grid and the Borzoi overlay resolve on top of the full config: one train
    job per experiment and seed, an embed job per encoder they read."""
    done = snakemake("-n", "--configfile", "config/config.yaml", overlay, "--cores", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = parse_dry_run(done.stdout)
    overlay_config = yaml.safe_load((REPO / overlay).read_text())
    experiments = overlay_config["experiments"]
    seeds = len(overlay_config.get("seeds", [0]))  # config.yaml leaves the default [0]
    runs = sum(1 if "seed" in exp else seeds for exp in experiments)
    assert sum(job["rule"] == "train" for job in jobs) == runs
    # config.yaml pools positionally (rule embed_positional); an adaptive run reads embed's
    embed_rules = ("embed", "embed_positional")
    embedded = {job["wildcards"].split("=", 1)[1] for job in jobs if job["rule"] in embed_rules}
    encoders = {exp.get("dna_encoder", "enformer") for exp in experiments}
    assert encoders <= embedded


@pytest.mark.slow
def test_two_overlays_setting_experiments_warn_at_parse(tmp_path: Path) -> None:
    """Snakemake replaces lists when it merges config files: the ablations' grid under the
    Borzoi overlay plans Borzoi's runs alone, which the parse now says in one line."""
    files = ("config/config.yaml", "config/ablations.yaml", "config/borzoi.yaml")
    done = snakemake("-n", "-d", tmp_path, "--configfile", *files)
    assert done.returncode == 0, done.stderr[-3000:]
    warned = [line for line in done.stderr.splitlines() if "isoflow: warning: experiments" in line]
    assert len(warned) == 1 and "only config/borzoi.yaml's are planned" in warned[0], warned
    # Borzoi's one entry under the ablations' seeds [0, 1, 2]: 3 runs, not 45 + 3
    assert sum(job["rule"] == "train" for job in parse_dry_run(done.stdout)) == 3


BAD_SETTINGS = {
    "train: {max_epoch: 1}": "config:train: unknown key 'max_epoch' (did you mean 'max_epochs'?)",
    "train: {lr: fast}": "config:train.lr: 'fast' is not of type 'number'",
    "demo: {n_gene: 5}": "config:demo: unknown key 'n_gene' (did you mean 'n_genes'?)",
    "model: {cached_modalities: [rna, atac]}": (
        "config:model.cached_modalities[1]: 'atac' is not one of ['dna', 'rna', 'protein']"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "line"), BAD_SETTINGS.items())
def test_a_bad_setting_fails_the_dry_run_in_one_line(tmp_path: Path, setting: str, line: str):
    """A typo or a wrong type stops `snakemake -n`, before any job could touch a checkpoint."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(setting + "\n")
    done = snakemake("-n", "--configfile", "config/demo.yaml", overlay, "--cores", "1")
    assert done.returncode != 0
    assert line in (done.stdout + done.stderr).splitlines(), done.stderr[-3000:]


@pytest.mark.slow
def test_encoders_sharing_a_weights_folder_with_other_sources_stop_the_dry_run(tmp_path: Path):
    """config.yaml's nt_dna reads nucleotide_transformer's weights folder; an overlay giving
    it another repo would embed with the first one's weights (rule download_encoders is keyed
    by the folder): the dry run stops in one line naming both encoders and the fix. The
    shared folder as shipped is one download job for both."""
    overlay = tmp_path / "nt500.yaml"
    overlay.write_text(
        "encoders:\n  nt_dna: {repo: InstaDeepAI/nucleotide-transformer-v2-500m-multi-species}\n"
    )
    args = ("-n", "-d", tmp_path, "--configfile", "config/config.yaml")
    done = snakemake(*args, overlay)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "shares" in line]
    assert lines and lines[0].startswith(
        "config:encoders.nt_dna: shares its weights folder resources/models/nucleotide_transformer "
        "with encoders.nucleotide_transformer but asks for another download (repo "
    ), done.stdout[-3000:]
    targets = ("results/embeddings/nt_dna", "results/embeddings/nucleotide_transformer")
    done = snakemake(*args, "--", *targets)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    downloads = [job for job in parse_dry_run(done.stdout) if job["rule"] == "download_encoders"]
    assert [job["wildcards"] for job in downloads] == ["folder=nucleotide_transformer"]


@pytest.mark.slow
def test_a_pretrained_encoder_read_raw_is_downloaded_for_training(tmp_path: Path):
    """config.yaml with RNA read raw and NT fine-tuned: the train job loads NT's weights, so
    the DAG downloads them and the train job waits for them."""
    overlay = tmp_path / "raw_rna.yaml"
    overlay.write_text(
        "model: {cached_modalities: [dna, protein]}\n"
        "encoders:\n  nucleotide_transformer: {finetune_last: 2}\n"
    )
    done = snakemake("-n", "-d", tmp_path, "--configfile", "config/config.yaml", overlay)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = parse_dry_run(done.stdout)
    record = "resources/models/nucleotide_transformer/isoflow_source.json"
    assert record in {job["output"] for job in jobs if job["rule"] == "download_encoders"}
    (train,) = [job for job in jobs if job["rule"] == "train"]
    assert record in train["input"].split(", ")


@pytest.mark.slow
def test_isoformer_preset_resolves_the_full_dag(tmp_path: Path) -> None:
    """config/isoformer.yaml over config.yaml (docs/reproduction.md): the full DAG resolves,
    the preset's options reach the rules that use them (and only those), and the splits view
    reads the dataset for the reference counts."""
    done = snakemake(
        "-n", "-d", tmp_path, "--configfile", "config/config.yaml", "config/isoformer.yaml",
        "--cores", "4", "--printshellcmds",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = parse_dry_run(done.stdout)
    rules = {job["rule"]: job for job in jobs}
    for stage in ("annotation", "sequences", "targets", "splits", "dataset", "train", "all"):
        assert stage in rules, f"rule {stage} missing: {sorted(rules)}"
    assert "results/dataset/gtex_v8_isoformer.parquet" in rules["report_splits"]["input"]
    assert "results/dataset/gtex_v8_isoformer.parquet" in rules["dataset"]["output"]


@pytest.mark.slow
def test_isoformer_preset_params_reach_the_scripts(tmp_path: Path) -> None:
    """The preset merged over config.yaml (as Snakemake merges config files, section by
    section) gives the rules these options (isoflow.workflow.set_options: the params)."""
    from isoflow.workflow import reference_inputs, set_options

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    preset = yaml.safe_load((REPO / "config" / "isoformer.yaml").read_text())
    for section, values in preset.items():
        config.setdefault(section, {}).update(values)
    assert set_options(config, "annotation", ["gene_types", "exclude_contigs"]) == {
        "gene_types": ["protein_coding"],
        "exclude_contigs": ["chrM", "chrX", "chrY"],
    }
    assert set_options(config, "dna", ["edge"]) == {"edge": "drop"}
    assert set_options(config, "gtex", ["cell_lines"]) == {}  # keep: GTEx's grouping
    assert reference_inputs(config, "gtex_v8_isoformer")
    assert config["split"]["valid_fraction"] == config["split"]["test_fraction"] == 0.05


@pytest.mark.slow
def test_an_overlay_narrowing_the_demo_switches_its_model_sections_off(tmp_path: Path) -> None:
    """The demo's bundles, construct scores, explain, design and finetune name runs of its
    full grid; an overlay with other experiments (the SLURM test's) turns them off with
    `models.export: []`, `constructs.table: null`, `explain: null`, `design: null` and
    `finetune: null`, and the DAG then holds none of those rules. Without `explain: null` or
    `finetune: null` the unknown run is a one-line config error."""
    overlay = REPO / "tests" / "workflow" / "slurm" / "demo-fast.yaml"
    done = snakemake("-n", "--configfile", "config/demo.yaml", overlay, "-d", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rules = set(re.findall(r"^rule (\w+):", done.stdout, flags=re.M))
    assert "train" in rules
    off = {"export_model", "export_models", "score_constructs", "explain", "demo_constructs"}
    off |= {"design", "finetune"}
    assert not rules & (off | {"demo_measurements"})

    partial = tmp_path / "partial.yaml"
    text = overlay.read_text().replace("explain: null\n", "")
    partial.write_text(text)
    done = snakemake("-n", "--configfile", "config/demo.yaml", partial, "-d", tmp_path)
    assert done.returncode != 0
    assert "explain.model" in done.stdout + done.stderr
    partial.write_text(overlay.read_text().replace("finetune: null\n", ""))
    done = snakemake("-n", "--configfile", "config/demo.yaml", partial, "-d", tmp_path)
    assert done.returncode != 0
    assert "finetune.model" in done.stdout + done.stderr

    partial.write_text(overlay.read_text().replace("design: null\n", ""))
    done = snakemake("-n", "--configfile", "config/demo.yaml", partial, "-d", tmp_path)
    assert done.returncode != 0
    # the demo's design names its ensemble (s0, s1) and held-out run (s2) itself
    assert "config:design.models" in done.stdout + done.stderr


@pytest.mark.slow
def test_use_tf_gamma_with_another_window_stops_the_dag_not_the_data_half(tmp_path: Path):
    """The full config's pretrained Enformer (use_tf_gamma) with another dna.window: a DAG
    with train or embed jobs stops before any job starts, with the one line naming the key;
    the data half alone (a sequences target) still plans."""
    overlay = tmp_path / "window.yaml"
    overlay.write_text("dna:\n  window: 2048\n")
    args = ("-n", "--configfile", "config/config.yaml", overlay, "-d", tmp_path)
    done = snakemake(*args)
    assert done.returncode != 0
    line = (
        "config:encoders.enformer.use_tf_gamma: true needs dna.window 196,608 (enformer-pytorch"
        " has TensorFlow's gamma positions only for the full input), but dna.window is 2,048: "
        "set dna.window: 196608, or encoders.enformer.use_tf_gamma: false with a dna.window "
        "that is a multiple of 128 and still gives at least its target_length of 896 bins "
        "(114,688 bp or more)"
    )
    assert line in done.stdout + done.stderr, done.stderr[-3000:]
    done = snakemake(*args, "results/sequences/rna.fa.gz")
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_nt_remote_code_that_cannot_import_stops_the_dry_run(tmp_path: Path):
    """config.yaml's NT-v2 folder holding a download whose remote code imports a name this
    transformers release removed: the dry run stops at parse in one line naming the folder
    and the fix, before any job; the same download with good code plans, and downloads
    nothing again."""
    from helpers.encoders import NT_STALE_MODELING_FILE, record_nt_download, save_tiny_nt_snapshot

    folder = tmp_path / "resources" / "models" / "nucleotide_transformer"
    save_tiny_nt_snapshot(folder, modeling=NT_STALE_MODELING_FILE)
    repo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["encoders"]
    record_nt_download(folder, repo["nucleotide_transformer"]["repo"])
    args = ("-n", "-d", tmp_path, "--configfile", "config/config.yaml")
    done = snakemake(*args)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "modeling code" in line]
    assert lines and lines[0].startswith(
        "resources/models/nucleotide_transformer:modeling code: the snapshot's remote code "
        "does not import with transformers "
    ), done.stdout[-3000:] + done.stderr[-3000:]
    assert "a_name_removed_long_ago" in lines[0] and "rerun rule download_encoders" in lines[0]
    # only a DAG with a job to run that reads the folder checks it: the data half, the
    # commands that build no such DAG, and an opt-out for a submit host whose transformers is
    # not the jobs' run as before (a review found them all stopped by the parse-time check)
    for other in (
        ("-n", "results/sequences/rna.fa.gz", "-d", tmp_path, "--configfile", "config/config.yaml"),
        ("--list-rules", "-d", tmp_path, "--configfile", "config/config.yaml"),
        ("--unlock", "-d", tmp_path, "--configfile", "config/config.yaml"),
    ):
        done = snakemake(*other)
        assert done.returncode == 0, (other, done.stdout[-2000:] + done.stderr[-2000:])
    done = snakemake(*args, env={**os.environ, "ISOFLOW_CHECK_REMOTE_CODE": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    save_tiny_nt_snapshot(folder)
    record_nt_download(folder, repo["nucleotide_transformer"]["repo"])
    done = snakemake(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    downloads = [job for job in parse_dry_run(done.stdout) if job["rule"] == "download_encoders"]
    assert "folder=nucleotide_transformer" not in [job["wildcards"] for job in downloads]


@pytest.mark.slow
def test_embed_jobs_scatter_each_cache_into_parts_and_gather_them(tmp_path: Path):
    """embed.jobs: 3 on the demo: each cache the runs read (adaptive and positional) is three
    embed_part jobs, gathered by rule embed_gather / embed_positional_gather into the folder
    the train job reads; the part folders are temporary."""
    overlay = tmp_path / "jobs.yaml"
    overlay.write_text("embed:\n  jobs: 3\n  share_forward: false\n")
    args = ("-n", "--configfile", "config/demo.yaml", overlay, "-d", tmp_path)
    done = snakemake(*args, "results/embeddings/esm2", "results/embeddings/esm2-positional")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = parse_dry_run(done.stdout)
    parts = sorted(job["output"] for job in jobs if job["rule"] == "embed_part")
    assert parts == [
        f"results/embeddings/.parts/esm2/{pooling}/{i}"
        for pooling in ("adaptive", "positional")
        for i in range(3)
    ]
    gathers = {job["rule"]: job for job in jobs if job["rule"].endswith("_gather")}
    assert gathers["embed_gather"]["input"] == ", ".join(parts[:3])
    assert gathers["embed_positional_gather"]["output"] == "results/embeddings/esm2-positional"


@pytest.mark.slow
def test_share_forward_writes_both_caches_of_an_encoder_in_one_job(tmp_path: Path):
    """embed.share_forward (the demo): each encoder whose adaptive and positional caches the
    runs read is one embed_shared job writing both, none of rules embed / embed_positional;
    with embed.jobs > 1 the dry run stops in one line naming the key."""
    args = ("-n", "--configfile", "config/demo.yaml", "-d", tmp_path)
    done = snakemake(*args, "results/embeddings/esm2", "results/embeddings/enformer-positional")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = parse_dry_run(done.stdout)
    shared = sorted(job["output"] for job in jobs if job["rule"] == "embed_shared")
    assert shared == [
        "results/embeddings/enformer, results/embeddings/enformer-positional",
        "results/embeddings/esm2, results/embeddings/esm2-positional",
    ]
    assert not [job for job in jobs if job["rule"] in ("embed", "embed_positional")]

    overlay = tmp_path / "jobs.yaml"
    overlay.write_text("embed:\n  jobs: 2\n")
    done = snakemake(*args[:3], overlay, *args[3:])
    line = (
        "config:embed.share_forward: true needs embed.jobs: 1 (got 2): the parts of a "
        "scattered embedding are per cache; set one of the two back"
    )
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode != 0 and line in lines, done.stdout[-3000:]


@pytest.mark.slow
def test_train_jobs_one_exports_every_asked_bundle_in_one_job(tmp_path: Path):
    """resources.train_jobs: one (the demo): the three bundles the constructs, design, explain
    and finetune read are one export_models job; a bundle nothing asks for, named on the
    command line, is still rule export_model's; train_jobs: per_run exports one job a run."""
    args = ("-n", "--configfile", "config/demo.yaml", "-d", tmp_path)
    done = snakemake(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = parse_dry_run(done.stdout)
    exports = [job for job in jobs if job["rule"].startswith("export_model")]
    seeds = [f"results/models/dna+rna+protein_enformer_cross_attention_s{i}" for i in (2, 0, 1)]
    assert [(job["rule"], job["output"]) for job in exports] == [
        ("export_models", ", ".join(seeds))
    ]
    other = "results/models/dna_enformer_cross_attention_s0"
    done = snakemake(*args, other)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [
        (j["rule"], j["output"]) for j in parse_dry_run(done.stdout) if "export" in j["rule"]
    ] == [("export_model", other)]
    overlay = tmp_path / "per_run.yaml"
    overlay.write_text("resources:\n  train_jobs: per_run\n")
    done = snakemake(*args[:3], overlay, *args[3:])
    assert done.returncode == 0, done.stderr[-3000:]
    exports = sorted(j["output"] for j in parse_dry_run(done.stdout) if "export" in j["rule"])
    assert exports == sorted(seeds)


@pytest.mark.slow
def test_a_users_indexed_fasta_is_read_never_reindexed(tmp_path: Path) -> None:
    """A user's FASTA (genome.fasta) whose .fai is there already: no job writes beside it,
    even with --forceall (before: rule genome_index declared that .fai as its output, and
    Snakemake remade it after a rules change, "Code has changed", also in a 0555 folder when
    run as root). Without its .fai the rule builds it; the workflow's own FASTAs (the demo's,
    a download) keep theirs as the rule's output."""
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "own.fa").write_text(">c1\nACGTACGTAC\n")
    (ref / "own.gtf").write_text(
        'c1\tx\ttranscript\t1\t8\t.\t+\t.\tgene_id "G1.1"; transcript_id "T1.1";\n'
        'c1\tx\texon\t1\t8\t.\t+\t.\tgene_id "G1.1"; transcript_id "T1.1";\n'
    )
    overlay = tmp_path / "own.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {"genome": {"fasta": str(ref / "own.fa")}, "annotation": {"gtf": str(ref / "own.gtf")}}
        )
    )
    workdir = tmp_path / "work"
    args = ("-n", "--forceall", "-d", workdir, "--configfile", "config/config.yaml", overlay)

    def plan() -> dict[str, dict]:
        done = snakemake(*args, "--", "results/sequences/rna.fa.gz")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return {job["rule"]: job for job in parse_dry_run(done.stdout)}

    jobs = plan()  # no .fai yet: the rule builds it beside the FASTA
    assert jobs["genome_index"]["output"] == f"{ref}/own.fa.fai"
    (ref / "own.fa.fai").write_text("c1\t10\t4\t10\t11\n")
    jobs = plan()
    assert "genome_index" not in jobs, jobs["genome_index"]
    assert f"{ref}/own.fa.fai" in jobs["sequences"]["input"]
    # the demo's generated genome: its index is remade with it
    done = snakemake("-n", "--forceall", "-d", workdir, "--configfile", "config/demo.yaml",
                     "--", "results/sequences/rna.fa.gz")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    demo = {job["rule"]: job for job in parse_dry_run(done.stdout)}
    assert demo["genome_index"]["output"] == "resources/demo/genome.fa.fai"


@pytest.mark.slow
def test_an_encoder_package_upgrade_reruns_that_familys_embed_jobs(tmp_path: Path):
    """The embed rules' params hold torch's and the encoder family's package versions
    (workflow.embed_packages): after an upgrade of fair-esm (here a newer fair-esm
    distribution's metadata first on PYTHONPATH, as `pip install -U fair-esm` leaves it) a
    dry run reruns the ESM-2 cache for its params, and not the NT cache, whose packages did
    not change; without the upgrade nothing is to do."""
    overlay = tmp_path / "caches.yaml"
    overlay.write_text("embed:\n  share_forward: false\n")
    caches = ("results/embeddings/esm2", "results/embeddings/nucleotide_transformer")
    args = ("--configfile", "config/demo.yaml", overlay, "-d", tmp_path / "work", "--cores", "2")
    built = snakemake(*args, *caches)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    done = snakemake("-n", *args, *caches)
    assert done.returncode == 0 and not parse_dry_run(done.stdout), done.stdout[-3000:]

    upgraded = tmp_path / "upgraded"
    info = upgraded / "fair_esm-99.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fair-esm\nVersion: 99.0\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(upgraded), os.environ.get("PYTHONPATH")])),
    }
    done = snakemake("-n", *args, *caches, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = [job for job in parse_dry_run(done.stdout) if job["rule"] == "embed"]
    assert [job["output"] for job in jobs] == ["results/embeddings/esm2"], done.stdout[-3000:]
    reason = jobs[0]["reason"]
    assert reason.startswith("Params have changed since last execution"), reason
    assert "before: {'fair-esm': " in reason and "now: {'fair-esm': '99.0'" in reason, reason
