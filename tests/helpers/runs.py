"""Fresh interpreters: ``python -c`` under a chosen backend, and ``train.py`` with its arguments for a
zero-shot run."""
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO_ROOT, "configs", "trainers", "ZeroshotMP", "toy.yaml")


def python(code: str, backend: str = "") -> subprocess.CompletedProcess:
    """``python -c code`` in the repository root with MUTUAL_PROMPT_BACKEND=``backend`` (empty: Dassl if it
    imports, else the built-in runtime)."""
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND=backend)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def run_train_py(cwd, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """train.py in a fresh interpreter; fails the test with its output unless it exits with 0."""
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def zeroshot_args(root: str, clip_file: str, output_dir: str, *extra: str) -> list:
    """train.py's arguments for ZeroshotMP on the Caltech101 tree under ``root`` with the weights ``clip_file``."""
    return ["--root", root, "--trainer", "ZeroshotMP", "--output-dir", output_dir,
            "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml"),
            "--config-file", TOY_CONFIG, *extra, "MODEL.BACKBONE.PATH", clip_file, "USE_CUDA", "False"]

