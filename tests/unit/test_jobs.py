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


def test_exit_when_done_ends_the_process_after_the_exit_handlers(tmp_path):
    """exit_when_done: nothing after run_script runs, but the atexit handlers do, the log
    holds every record and what main printed reaches stdout; exit status 0."""
    log = tmp_path / "rule.log"
    handler = tmp_path / "handler.txt"
    code = (
        "import atexit, logging, pathlib\n"
        "from isoflow.jobs import run_script\n"
        f"atexit.register(pathlib.Path({str(handler)!r}).write_text, 'ran')\n"
        "def main():\n"
        "    logging.getLogger('isoflow').info('the last record')\n"
        "    print('printed by main', end='')\n"
        f"run_script(main, {str(log)!r}, exit_when_done=True)\n"
        "print('after run_script')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "printed by main"
    assert handler.read_text() == "ran"
    assert log.read_text().endswith("isoflow INFO the last record\n")


def test_exit_when_done_waits_like_a_normal_exit_while_a_thread_runs(tmp_path):
    """A non-daemon thread still running: run_script returns, and the interpreter's own exit
    waits for the thread."""
    code = (
        "import threading, time\n"
        "from isoflow.jobs import run_script\n"
        "def late():\n"
        "    time.sleep(0.2)\n"
        "    print('thread done', flush=True)\n"
        "def main():\n"
        "    threading.Thread(target=late).start()\n"
        "run_script(main, exit_when_done=True)\n"
        "print('returned', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "returned\nthread done\n"
