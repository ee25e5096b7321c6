"""Install the mutual_prompt library (pip name ``mutual-prompt``).

``trainers/`` and ``datasets/`` stay at the repository root, as in CoOp, and are imported from there.
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_readme() -> str:
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


SLURM = ["submitit>=1.4"]
PLOT = ["matplotlib>=3.5"]
OPEN_CLIP = ["open-clip-torch>=3.3,<4"]  # MODEL.BACKBONE.NAME open_clip:<model>
LINEAR_PROBE = ["scikit-learn>=1.3"]  # the LinearProbeMP trainer

setup(
    name="mutual-prompt",
    version="0.1.0",
    description="Mutual Prompt Learning (IJCV 2024) for CLIP, as a CoOp / Dassl plugin",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["mutual_prompt", "mutual_prompt.*"]),
    package_data={"mutual_prompt.clip": ["*.pt"], "mutual_prompt.tools": ["*.csv"]},
    include_package_data=True,
    install_requires=[
        # torch.amp.GradScaler("cuda") (PREC amp) needs torch 2.3; torchvision 0.18 is its release.
        "torch>=2.3",
        "torchvision>=0.18",
        "clip-anytorch>=2.5",
        # clip imports pkg_resources, which setuptools 81 removed.
        "setuptools<81",
        "yacs>=0.1.8",
        "tabulate>=0.8",
        "tqdm>=4.0",
        "numpy>=1.21",
        "Pillow>=9.0",
        "scipy>=1.7",
    ],
    extras_require={
        # The tests cover the SLURM executor (through submitit's local executor), the figures, open_clip
        # backbones and the linear probe.
        "test": ["pytest>=7", *SLURM, *PLOT, *OPEN_CLIP, *LINEAR_PROBE],
        "slurm": SLURM,
        "plot": PLOT,
        "open_clip": OPEN_CLIP,
        "linear_probe": LINEAR_PROBE,
        "tensorboard": ["tensorboard>=2.0"],
    },
    license="MIT",
)
