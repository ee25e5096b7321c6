"""What a reader sees first: the README's first screen says what this is, the citation is complete,
and every ViT-B/16 config says which of its values come from the protocol and which are ours."""
import glob
import os
import re
from typing import Dict, List, Set

import pytest
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, "README.md")
CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "trainers", "MutualPrompt", "vit_b16_*.yaml")))
AUTHORS = ("Sifan Long", "Zhen Zhao", "Junkun Yuan", "Zichang Tan", "Jiangjiang Liu", "Jingyuan Feng",
           "Shengsheng Wang", "Jingdong Wang")
KEY = re.compile(r"\b[A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)+\b")
GROUPS = {"protocol": "# - from the protocol", "ours": "# - ours", "run": "# - run settings"}


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def first_screen(text: str) -> str:
    """The README up to the end of the Quick start's code block."""
    quick_start = text.index("## Quick start")
    opening = text.index("```", quick_start)
    return text[:text.index("```", opening + 3) + 3]


def citation(text: str) -> str:
    start = text.index("## Citation")
    return text[start:text.index("\n## ", start + 1)]


def bibtex_authors(entry: str) -> List[str]:
    """"First Last" for each author of a BibTeX entry written as "Last, First and ..."."""
    authors = re.search(r"author\s*=\s*\{([^}]*)\}", entry, re.S).group(1)
    names = [" ".join(name.split()) for name in re.split(r"\s+and\s+", authors)]
    return [" ".join(reversed([part.strip() for part in name.split(",", 1)])) for name in names]


def test_first_screen_says_what_this_is_and_keeps_the_quick_start():
    screen = first_screen(readme())
    words = " ".join(screen.split())
    assert len(screen.splitlines()) <= 45
    assert "independent implementation" in words and "abstract" in words
    assert "no code from the authors" in words and "verified reproduction" in words
    assert "CoOp" in words and "CoCoOp" in words and "zero-shot CLIP" in words and "1e-5" in words
    assert "docs/METHOD.md#choices-the-paper-leaves-open" in screen
    code = screen[screen.index("```", screen.index("## Quick start")):]
    assert "bash scripts/quickstart.sh" in code and "python -m pytest -q" in code


def test_first_screen_checker_fails_without_the_statement():
    text = readme().replace("independent implementation", "implementation")
    assert "independent implementation" not in " ".join(first_screen(text).split())


def test_citation_names_all_eight_authors_the_doi_and_cites_coop_and_cocoop():
    block = citation(readme())
    entries = {m.group(1): m.group(0) for m in re.finditer(r"@\w+\{(\w+),.*?\n\}", block, re.S)}
    assert {"long2024mutual", "zhou2022coop", "zhou2022cocoop"} <= set(entries)
    paper = entries["long2024mutual"]
    assert bibtex_authors(paper) == list(AUTHORS)
    assert "10.1007/s11263-024-02243-z" in paper and "International Journal of Computer Vision" in paper
    assert "year    = {2024}" in paper
    assert "Learning to Prompt for Vision-Language Models" in entries["zhou2022coop"]
    assert "Conditional Prompt Learning for Vision-Language Models" in entries["zhou2022cocoop"]
    assert "CVPR" in entries["zhou2022cocoop"] and "International Journal of Computer Vision" in entries["zhou2022coop"]


def leaf_keys(data: Dict, prefix: str = "") -> Set[str]:
    keys = set()
    for name, value in data.items():
        path = f"{prefix}{name}"
        keys |= leaf_keys(value, path + ".") if isinstance(value, dict) else {path}
    return keys


def header_groups(path: str) -> Dict[str, List[str]]:
    """The config keys each group of a config's leading comment block names."""
    groups: Dict[str, List[str]] = {}
    current = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            for group, opening in GROUPS.items():
                if line.startswith(opening):
                    current = groups.setdefault(group, [])
            if current is not None:
                current.extend(KEY.findall(line))
    return groups


def unlabelled_keys(path: str) -> Set[str]:
    with open(path, encoding="utf-8") as f:
        keys = leaf_keys(yaml.safe_load(f))
    named = {key for names in header_groups(path).values() for key in names}
    return keys - named


def test_there_are_vit_b16_configs():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_header_labels_every_key_once(path):
    groups = header_groups(path)
    assert set(groups) == set(GROUPS), f"{path}: the header needs the groups {list(GROUPS.values())}"
    with open(path, encoding="utf-8") as f:
        keys = leaf_keys(yaml.safe_load(f))
    named = [key for names in groups.values() for key in names]
    assert len(named) == len(set(named)), f"{path}: a key is named in two groups"
    assert set(named) == keys, (f"{path}: keys set but not labelled: {sorted(keys - set(named))}; "
                                f"labelled but not set: {sorted(set(named) - keys)}")
    assert "MODEL.BACKBONE.NAME" in groups["protocol"] and "TRAINER.MUTUAL_PROMPT.TVP.TOPK" in groups["ours"]
    with open(path, encoding="utf-8") as f:
        assert "docs/METHOD.md#choices-the-paper-leaves-open" in f.read()


def test_a_new_key_without_a_label_is_found(tmp_path):
    path = tmp_path / "vit_b16_new.yaml"
    with open(CONFIGS[0], encoding="utf-8") as f:
        path.write_text(f.read() + "TEST:\n  FINAL_MODEL: best_val\n")
    assert unlabelled_keys(str(path)) == {"TEST.FINAL_MODEL"}
