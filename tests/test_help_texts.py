"""Every command's --help reads cleanly: it exits 0, each option is described, and there is no source
markup (reStructuredText ``code``, roles), no stray backslash and no line ending in a colon with
nothing after it."""
import os
import re
import subprocess
import sys
from typing import List

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = [
    ["train.py"],
    ["parse_test_res.py"],
    ["interpret_prompt.py"],
    ["-m", "mutual_prompt.doctor"],
    ["-m", "mutual_prompt.sweep"],
    ["-m", "mutual_prompt.sweep", "run"],
    ["-m", "mutual_prompt.sweep", "status"],
    ["-m", "mutual_prompt.convert"],
    ["-m", "mutual_prompt.convert", "from-coop"],
    ["-m", "mutual_prompt.convert", "to-coop"],
    ["-m", "mutual_prompt.install_into"],
    ["-m", "mutual_prompt.toy.pretrain"],
]
ENTRY = re.compile(r"^  (\S.*?)(?:\s{2,}(\S.*))?$")  # an option or positional: its spec, then maybe its help


def help_text(command: List[str]) -> str:
    proc = subprocess.run([sys.executable, *command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def undescribed_entries(text: str) -> List[str]:
    """The option and argument entries with no help text on their line or the next (indented) one; entries
    are the lines of a section (a heading such as ``options:`` up to the next blank line)."""
    lines = text.splitlines()
    missing, in_section, after_heading, in_description = [], False, False, False
    for i, line in enumerate(lines):
        if not line.strip():
            in_section, after_heading, in_description = in_description, False, False
            continue
        if not line.startswith(" "):
            in_section = after_heading = line.endswith(":")
            continue
        match = ENTRY.match(line)
        spec = match.group(1) if match else ""
        if after_heading and not spec.startswith("-") and len(spec.split()) > 3:
            in_section, in_description = False, True  # a group's description: its entries follow a blank line
        after_heading = False
        if not in_section or not match or match.group(2):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not following.startswith("    ") or following.strip().startswith("-"):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_reads_cleanly(command):
    text = help_text(command)
    assert "``" not in text and not re.search(r":(class|func|meth|mod|attr):", text), text
    assert "\\" not in text, text
    lines = text.splitlines()
    for line, following in zip(lines, lines[1:] + [""]):
        assert not (line.rstrip().endswith(":") and not following.strip()), f"dangling colon: {line!r}"
    assert undescribed_entries(text) == [], text


def test_the_checker_finds_an_undescribed_option_and_accepts_described_ones():
    text = ("options:\n  -h, --help   show this help\n  --seed SEED\n  --lr LR\n"
            "                 the learning rate\n  --steps STEPS  optimiser steps\n\n"
            "trainers: A, B,\n  C, D\n\nwhat to run:\n  Each from its flag, else its default.\n\n  KEY VALUE\n")
    assert undescribed_entries(text) == ["--seed SEED", "KEY VALUE"]
