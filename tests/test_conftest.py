"""tests/conftest.py: a missing Debian tool or absent shared data is announced before the tests
run (count and the command that fixes it), skipped with the reason, counted by reason at the
end, and an error under CI=true."""

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text()
SUITE = """
import pytest

@pytest.mark.needs("gffread")
def test_oracle():
    pass

@pytest.mark.needs("gffread", "samtools")
def test_two_tools():
    pass

@pytest.mark.needs("shared")
def test_real_excerpt():
    pass

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.replace('pytest_plugins = ["pytester"]', ""))
    pytester.makepyfile(test_suite=SUITE)
    empty = pytester.mkdir("empty-path")
    monkeypatch.setenv("PATH", str(empty))  # no gffread, no samtools
    monkeypatch.delenv("CI", raising=False)
    # conftest.py reads its paths from helpers.paths: here, ones that do not exist.
    helpers = pytester.mkpydir("helpers")
    (helpers / "paths.py").write_text(
        "from pathlib import Path\n"
        "REPO = Path.cwd()\n"
        "SNAKEMAKE = REPO / 'no-snakemake'\n"
        "SHARED_REAL = REPO / 'no-shared-data'\n"
    )
    return pytester


def test_missing_tools_are_announced_skipped_and_counted(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3)
    lines = result.stdout.lines
    announce = next(i for i, line in enumerate(lines) if "3 tests will be skipped" in line)
    first_result = next(i for i, line in enumerate(lines) if line.startswith("test_suite.py"))
    assert announce < first_result, "the skips must be announced before any test runs"
    result.stdout.fnmatch_lines(
        [
            "*1  needs gffread (gffread missing): sudo bash .ci/install-debian.sh*",
            "*1  needs gffread (gffread missing)*; needs samtools (samtools missing)*",
            "*1  needs the shared real-data excerpts:*absent",
        ]
    )
    summary = lines.index(next(line for line in lines if "skipped, by reason" in line))
    assert any("1  needs gffread" in line for line in lines[summary:])


def test_a_missing_tool_fails_under_ci(suite: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CI=true but gffread, samtools missing*"])


def test_a_job_logging_set_up_in_one_test_does_not_print_into_the_next(suite) -> None:
    """jobs.run_script's basicConfig(force=True) puts a handler on the test's captured stderr;
    without the conftest's restore the next test's records print "--- Logging error ---"
    (the stream is closed) into its own stderr."""
    suite.makepyfile(
        test_logging="""
import logging, sys

def test_a_job_configures_logging(capsys):
    logging.basicConfig(
        level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr)], force=True
    )
    logging.getLogger("isoflow").info("a job's record")

def test_the_next_prints_one_line(capsys):
    logging.getLogger("isoflow").info("a record")
    sys.stderr.write("one line\\n")
    assert capsys.readouterr().err.strip() == "one line"
"""
    )
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "test_logging.py")
    result.assert_outcomes(passed=2)
