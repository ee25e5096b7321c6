"""README.md and docs/*.md: every relative link points to a file that exists, every #anchor to a
heading of its target, and every page in docs/ is reachable from the README."""
import glob
import os
import re
from typing import Dict, List, Tuple

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`+[^`]*`+")
# [text](target) and ![alt](target); the text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path: str) -> List[Tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks, code spans removed."""
    lines, in_fence = [], False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            if not in_fence:
                lines.append((number, CODE_SPAN.sub("", line)))
    return lines


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: str) -> set:
    """The anchors of every heading in a Markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: Dict[str, int] = {}
    result = set()
    in_fence = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            match = None if in_fence else HEADING.match(line)
            if match:
                base = github_anchor(match.group(2))
                count = seen.get(base, 0)
                seen[base] = count + 1
                result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(page: str, root: str = REPO_ROOT) -> List[Tuple[int, str]]:
    path = os.path.join(root, page)
    links = []
    for number, line in prose_lines(path):
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                links.append((number, target))
    return links


def broken_links(page: str, root: str = REPO_ROOT) -> List[str]:
    """One line per link of ``page`` (relative to ``root``) whose file or heading does not exist."""
    problems = []
    page_dir = os.path.dirname(os.path.join(root, page))
    for number, target in relative_links(page, root):
        file_part, _, anchor = target.partition("#")
        target_path = os.path.normpath(os.path.join(page_dir, file_part)) if file_part else os.path.join(root, page)
        if not os.path.exists(target_path):
            problems.append(f"{page}:{number}: {target}: no file {os.path.relpath(target_path, root)}")
        elif anchor and (not target_path.endswith(".md") or anchor not in anchors(target_path)):
            problems.append(f"{page}:{number}: {target}: no heading with anchor #{anchor}")
    return problems


def test_the_link_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# Title\n\n## The `PREC` key (fp16 → fp32)\n\n## Same\n\n## Same\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/A.md) [ok](docs/A.md#the-prec-key-fp16--fp32) [ok](docs/A.md#same-1) [ok](#top)\n"
        "# Top\n"
        "[no file](docs/B.md) [no anchor](docs/A.md#nothing) [web](https://example.org/x.md)\n"
        "`[in code](docs/C.md)`\n```\n[in a fence](docs/D.md)\n```\n"
    )
    problems = broken_links("README.md", str(tmp_path))
    assert problems == [
        "README.md:3: docs/B.md: no file docs/B.md",
        "README.md:3: docs/A.md#nothing: no heading with anchor #nothing",
    ]


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {os.path.normpath(target.partition("#")[0]) for _, target in relative_links("README.md")}
    pages = [page for page in PAGES if page != "README.md"]
    assert pages, "docs/ has no Markdown pages"
    assert [page for page in pages if page not in linked] == []
