"""benchmarks/linear_kernels.py measures every layer shape with both kernels."""
import os
import subprocess
import sys

import pytest

from mutual_prompt.clip.frozen_linear import onednn_linear_available

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "linear_kernels.py")


@pytest.mark.skipif(not onednn_linear_available(), reason="this PyTorch build has no oneDNN")
def test_prints_a_ratio_for_every_clip_layer_shape():
    out = subprocess.run([sys.executable, SCRIPT, "--repeats", "1", "--threads", "1"], capture_output=True,
                         text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith(("image ", "text "))]
    assert [row.split("  ")[0] for row in rows] == ["image qkv", "image out_proj", "image c_fc", "image c_proj",
                                                      "text qkv", "text c_fc", "text c_proj"]
    assert all(row.rstrip().endswith("x") and float(row.split()[-1][:-1]) > 0 for row in rows)
