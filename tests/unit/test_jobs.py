"""isoflow.jobs: a rule script's InputError is exit 1 with one line, in the log and on stderr."""

import subprocess
import sys


def test_run_script_turns_input_error_into_exit_1_with_one_line(tmp_path):
    log = tmp_path / "rule.log"
    code = (
        "from isoflow.jobs import run_script\n"
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
