"""A run's details reach log.txt always and the terminal only with --verbose; the known clip warning is silenced;
the reporting commands end quietly when their reader goes away (mutual_prompt/tools/exit_status.py)."""
import contextlib
import io
import subprocess
import sys

import pytest

from mutual_prompt.run import console
from mutual_prompt.runtime.logger import Tee


@contextlib.contextmanager
def teed_stdout(tmp_path):
    """``sys.stdout`` tees into a terminal (a StringIO) and ``tmp_path/log.txt``, as a run's logger sets it."""
    terminal, saved = io.StringIO(), sys.stdout
    sys.stdout = tee = Tee(terminal, str(tmp_path / "log.txt"))
    try:
        yield terminal, tmp_path / "log.txt"
    finally:
        sys.stdout = saved
        tee.close()
        console.set_verbose(False)


def test_a_detail_goes_to_the_log_only_unless_verbose(tmp_path):
    with teed_stdout(tmp_path) as (terminal, log):
        console.detail("** Config **")
        print("epoch [1/5]")
        assert terminal.getvalue() == "epoch [1/5]\n"
        assert log.read_text() == "** Config **\nepoch [1/5]\n"

        console.set_verbose(True)
        console.detail("Prompts: [...]")
        assert terminal.getvalue().endswith("Prompts: [...]\n")
        assert log.read_text().endswith("Prompts: [...]\n")


def test_log_only_writes_to_the_log_file_alone(tmp_path):
    with teed_stdout(tmp_path) as (terminal, log):
        console.log_only("train.py: error: x")
        assert terminal.getvalue() == "" and log.read_text() == "train.py: error: x\n"


def test_without_a_log_file_a_detail_is_not_printed(capsys):
    console.detail("** Config **")
    assert capsys.readouterr().out == ""


def test_importing_clip_shows_no_pkg_resources_warning():
    proc = subprocess.run([sys.executable, "-W", "default", "-c", "import mutual_prompt.clip"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pkg_resources" not in proc.stderr


@pytest.mark.parametrize("command", ["doctor", "sweep status"])
def test_a_reader_that_goes_away_ends_a_command_quietly(repo_root, tmp_path, command):
    """``python -m mutual_prompt.doctor | head -1`` and the like: exit 141 as a shell tool would, no traceback."""
    (tmp_path / "data").mkdir()
    args = {"doctor": ["-m", "mutual_prompt.doctor", "--root", str(tmp_path / "data")],
            "sweep status": ["-m", "mutual_prompt.sweep", "status", "base2new", "--repo", repo_root, "--output",
                             str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--cfg", "toy", "--datasets",
                             "toy_shapes"]}[command]
    proc = subprocess.Popen([sys.executable, *args], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
