"""Whether the real Dassl toolbox imports; ``needs_dassl`` skips a test where it does not."""
import importlib.util
import subprocess
import sys

import pytest


def dassl_importable() -> bool:
    """Whether Dassl imports in a fresh interpreter (it may be installed but broken)."""
    if importlib.util.find_spec("dassl") is None:
        return False
    return subprocess.run([sys.executable, "-c", "import dassl.engine"], capture_output=True).returncode == 0


needs_dassl = pytest.mark.skipif(not dassl_importable(), reason="Dassl.pytorch is not installed (import dassl fails)")
