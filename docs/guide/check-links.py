#!/usr/bin/env python3
"""Checks the guide's relative links: each `](page.md)` or `](page.md#anchor)`
names a page that exists, and each anchor a heading on that page (mdBook
itself does not fail on either). Exits 1 naming every broken link."""
import pathlib
import re
import sys

src = pathlib.Path(__file__).resolve().parent / "src"


def anchor(heading: str) -> str:
    """mdBook's id for a heading: lowercase, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: pathlib.Path) -> set:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(anchor(line.lstrip("#")))
    return found


broken = []
for page in sorted(src.rglob("*.md")):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)#:]+\.md)(#[^)]*)?\)", text):
        path, frag = target
        linked = (page.parent / path).resolve()
        if not linked.exists():
            broken.append(f"{page.relative_to(src)}: no page {path}")
        elif frag and frag[1:] not in anchors(linked):
            broken.append(f"{page.relative_to(src)}: no heading {frag} in {path}")
for line in broken:
    print(f"broken link: {line}", file=sys.stderr)
sys.exit(1 if broken else 0)
