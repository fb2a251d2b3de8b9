"""README.md and docs/: every relative link leads somewhere, and nothing leads outside.

A reader meets the project through these pages; a link to a moved or renamed page, a
section heading that changed under an anchor, or a pointer to material outside the
repository (the brief it was built from) is a dead end for them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "SECURITY.md",
                *(ROOT / "docs").rglob("*.md")])

# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def prose(path: Path) -> str:
    """The page without code blocks and code spans, where a bracket is not a link."""
    return CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        base = slug(heading)
        n = 0
        while (name := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(name)
    return found


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I))


def relative_links() -> list[tuple[str, str]]:
    return [(str(page.relative_to(ROOT)), target) for page in PAGES for target in links(page)
            if not is_external(target)]


def test_the_pages_have_links():
    """The scan itself works: the README links into docs/."""
    assert ("README.md", "docs/operations.md") in relative_links()


@pytest.mark.parametrize(("page", "target"), relative_links())
def test_relative_link_resolves(page, target):
    path_part, _, anchor = target.partition("#")
    source = ROOT / page
    dest = (source.parent / path_part).resolve() if path_part else source
    assert dest.is_relative_to(ROOT), f"{page}: {target} points outside the repository"
    rel = str(dest.relative_to(ROOT))
    assert dest.exists(), f"{page}: {target}: no such file {rel}"
    if anchor and dest.suffix == ".md":
        assert anchor in anchors(dest), f"{page}: {target}: no heading #{anchor} in {rel}"


@pytest.mark.parametrize("page", [str(p.relative_to(ROOT)) for p in PAGES])
def test_stands_on_its_own(page):
    """No citation of the specification the project was built from, and no path out of
    the repository (FRAUD_SUSPECTED holds the letters S-P-E-C: hence the word match)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert not re.search(r"\bSPEC\b", text), f"{page} cites SPEC"
    assert "../shared" not in text, f"{page} points outside the repository"
    assert "§" not in text, f"{page} cites a section of an outside document"
    without_anchors = re.sub(r"\]\([^)]*#[^)]*\)", "]", text)  # "#4-the-results-file…"
    assert not re.search(r"(?i)\bissues?\s*#?\d+|(?<![\w&])#\d+\b", without_anchors), \
        f"{page} names an issue number: the history belongs in git, not in the docs"
