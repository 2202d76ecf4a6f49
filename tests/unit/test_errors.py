"""The shared pieces every rule uses: one-line errors, atomic outputs, run names."""

import gzip
import subprocess
import sys

import pysam
import pytest

from isoflow.errors import InputError, atomic_path, non_utf8_error
from isoflow.experiments import expand_experiments, run_name


def test_input_error_is_one_line_naming_file_and_record():
    err = InputError("ann.gtf.gz", 1234, "exon of ENST1.1 lies\noutside its transcript")
    assert str(err) == "ann.gtf.gz:1234: exon of ENST1.1 lies outside its transcript"
    assert str(InputError("x.tsv", None, "empty")) == "x.tsv: empty"


@pytest.mark.parametrize("compression", ["plain", "gzip", "bgzip"])
def test_non_utf8_error_names_line_byte_and_column(tmp_path, compression):
    text = "ok line\nsecond \u00e9 fine\nthird".encode() + b" bad\xff here\nlast\n"
    path = tmp_path / "t.txt"
    path.write_bytes(text)
    if compression != "plain":
        packed = tmp_path / "t.txt.gz"
        if compression == "gzip":
            packed.write_bytes(gzip.compress(text))
        else:
            pysam.tabix_compress(str(path), str(packed))
        path = packed
    expected = (
        f"{path}:3: byte 0xff at column 10 is not UTF-8; "
        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )
    assert str(non_utf8_error(path)) == expected
    assert str(non_utf8_error(path, text)) == expected  # the bytes in hand: same answer
    ok = tmp_path / "ok.txt"
    ok.write_text("all fine\n")
    assert str(non_utf8_error(ok)) == f"{ok}: not UTF-8 text"


def test_atomic_path_renames_only_on_success(tmp_path):
    out = tmp_path / "sub" / "table.tsv"
    with atomic_path(out) as tmp:
        tmp.write_text("a\n")
        assert not out.exists()
    assert out.read_text() == "a\n"

    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "a\n"
    assert [p.name for p in out.parent.iterdir()] == ["table.tsv"]


def test_atomic_path_directory(tmp_path):
    out = tmp_path / "cache"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "shard0.npy").write_bytes(b"x")
    assert (out / "shard0.npy").exists()
    with pytest.raises(ValueError), atomic_path(out) as tmp:
        tmp.mkdir()
        raise ValueError
    assert (out / "shard0.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_atomic_path_requires_something_written(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_run_names_follow_the_design_contract():
    assert (
        run_name({"modalities": ["protein", "dna", "rna"]})
        == "dna+rna+protein_enformer_cross_attention_s0"
    )
    assert (
        run_name({"modalities": ["rna"], "aggregator": "concat", "seed": 2, "fraction": 0.25})
        == "rna_enformer_concat_s2_f0.25"
    )
    assert run_name({"modalities": ["dna"], "shuffle_targets": True}).endswith("_shuffled")
    with pytest.raises(ValueError, match="unknown modalities"):
        run_name({"modalities": ["atac"]})


def test_duplicate_experiments_are_a_config_error():
    with pytest.raises(ValueError, match=r"experiments\[1\]: duplicate run"):
        expand_experiments({"experiments": [{"modalities": ["dna"]}, {"modalities": ["dna"]}]})
    runs = expand_experiments({"experiments": [{"modalities": ["rna", "dna"]}]})
    assert runs["dna+rna_enformer_cross_attention_s0"]["modalities"] == ["dna", "rna"]


def test_run_script_turns_input_error_into_exit_1_with_one_line(tmp_path):
    log = tmp_path / "rule.log"
    code = (
        "from isoflow.cli import run_script\n"
        "from isoflow.errors import InputError\n"
        "def main():\n"
        "    raise InputError('a.gct.gz', 7, 'non-numeric TPM for GTEX-1117F-0226-SM-5GZZ7')\n"
        f"run_script(main, {str(log)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "isoflow: error: a.gct.gz:7: non-numeric TPM" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "a.gct.gz:7: non-numeric TPM" in log.read_text()


def test_config_violations_name_the_key_on_one_line():
    import yaml

    from isoflow.config import check_config

    schema = "config/schema.yaml"
    good = yaml.safe_load(open("config/demo.yaml"))
    check_config(good, schema)
    check_config(yaml.safe_load(open("config/config.yaml")), schema)
    cases = [
        ({"genome": {"sha256": "xyz"}}, "config:genome.sha256: 'xyz' does not match"),
        ({"tissue_set": "organ"}, "config:tissue_set: 'organ' is not one of"),
        ({"dna": {"window": "big"}}, "config:dna.window: 'big' is not of type 'integer'"),
        ({"experiments": [{"modalities": ["atac"]}]}, "config:experiments[0].modalities[0]:"),
        ({"genome": {"fasta_path": "x.fa"}}, "config:genome: unknown key 'fasta_path'"),
    ]
    for patch, expected in cases:
        bad = {**good, **patch}
        with pytest.raises(InputError) as err:
            check_config(bad, schema)
        assert str(err.value).startswith(expected), str(err.value)
        assert "\n" not in str(err.value)
