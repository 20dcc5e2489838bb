"""Markdown body to HTML with fragment blocks interleaved between paragraphs, and no external URLs.

Blocks go after evenly spread paragraphs (or exactly where the author writes a ``[[fragments]]``
paragraph). The page is self-contained, so links to http(s) addresses become text showing the
address without its scheme, and external images are replaced by their alt text (with a warning).
Raw HTML in the article goes through the allow-list sanitiser (sanitize.py) before the blocks go in.
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as etree
from collections.abc import Callable
from pathlib import Path

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from amberwatch.errors import AmberwatchWarning
from amberwatch.story.packing import split_into_blocks
from amberwatch.story.sanitize import clean_article_html

MARKER = "[[fragments]]"
SLOT_ATTR = "data-amber-slot"
SLOT_RE = re.compile(r'<div data-amber-slot="(\d+)"></div>')
EXTERNAL_RE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
SCHEME_RE = re.compile(r"https?://", re.IGNORECASE)
TEXT_BLOCK_TAGS = {"p", "ul", "ol", "blockquote", "table", "pre", "dl"}


class _StoryTree(Treeprocessor):
    """Insert slot placeholders between top-level blocks and neutralise external links and images."""

    def __init__(self, md: markdown.Markdown, n_fragments: int) -> None:
        super().__init__(md)
        self.n_fragments = n_fragments
        self.block_groups: dict[int, list[list[int]]] = {}  # slot -> fragment index lists of its blocks
        self.external: list[str] = []

    def run(self, root: etree.Element) -> None:
        self._neutralise(root)
        children = list(root)
        markers = [
            i for i, el in enumerate(children) if el.tag == "p" and len(el) == 0 and (el.text or "").strip() == MARKER
        ]
        if markers:
            slots = markers
        else:
            slots = [i for i, el in enumerate(children[:-1]) if el.tag in TEXT_BLOCK_TAGS] or [len(children) - 1]
        sizes = split_into_blocks(self.n_fragments, len(slots))
        start = 0
        for slot, size in zip(_spread(len(slots), len(sizes)), sizes):
            self.block_groups.setdefault(slot, []).append(list(range(start, start + size)))
            start += size
        # Insert from the end so earlier indices stay valid.
        for slot_no in sorted(range(len(slots)), reverse=True):
            idx = slots[slot_no]
            placeholder = etree.Element("div", {SLOT_ATTR: str(slot_no)})
            if markers:
                root.remove(children[idx])
                root.insert(idx, placeholder)
            else:
                root.insert(idx + 1, placeholder)

    def _neutralise(self, root: etree.Element) -> None:
        for parent in root.iter():
            for child in list(parent):
                if child.tag == "a" and EXTERNAL_RE.match(child.get("href", "")):
                    href = child.get("href", "")
                    self.external.append(href)
                    shown = SCHEME_RE.sub("", href).lstrip("/").rstrip("/")
                    child.tag = "span"
                    child.attrib.clear()
                    child.set("class", "ext-link")
                    note = etree.SubElement(child, "span", {"class": "ext-url"})
                    note.text = f" ({shown})"
                elif child.tag == "img" and EXTERNAL_RE.match(child.get("src", "")):
                    self.external.append(child.get("src", ""))
                    alt = child.get("alt", "")
                    tail = child.tail
                    child.tag = "span"
                    child.attrib.clear()
                    child.text = alt
                    child.tail = tail


def _spread(n_slots: int, n_blocks: int) -> list[int]:
    """Slot index of each block: evenly spread when there are enough slots, the rest in the last slot."""
    if n_blocks <= n_slots:
        picks: list[int] = []
        for k in range(n_blocks):
            want = round((k + 1) * n_slots / (n_blocks + 1)) - 1 if n_blocks < n_slots else k
            picks.append(min(max(want, picks[-1] + 1 if picks else 0), n_slots - n_blocks + k))
        return picks
    return list(range(n_slots)) + [n_slots - 1] * (n_blocks - n_slots)


class _StoryExtension(Extension):
    def __init__(self, n_fragments: int) -> None:
        super().__init__()
        self.processor: _StoryTree | None = None
        self.n_fragments = n_fragments

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        """Register the tree processor after inline parsing (priority 15 < inline's 20)."""
        self.processor = _StoryTree(md, self.n_fragments)
        md.treeprocessors.register(self.processor, "amber_story", 15)


def render_body(
    body_markdown: str, n_fragments: int, block_html: Callable[[list[int]], str], article_path: Path
) -> str:
    """HTML of the article body with ``block_html(fragment indices)`` inserted at the chosen places."""
    ext = _StoryExtension(n_fragments)
    md = markdown.Markdown(
        extensions=[ext, "markdown.extensions.smarty", "markdown.extensions.tables"],
        extension_configs={"markdown.extensions.tables": {"use_align_attribute": True}},  # no style attributes
    )
    text = clean_article_html(md.convert(body_markdown))
    proc = ext.processor
    assert proc is not None

    def fill(m: re.Match[str]) -> str:
        groups = proc.block_groups.get(int(m.group(1)), [])
        return "\n".join(block_html(g) for g in groups if g)

    html_text = SLOT_RE.sub(fill, text)
    leftover = SCHEME_RE.findall(html_text)
    if proc.external or leftover:
        urls = proc.external[:3]
        warnings.warn(
            AmberwatchWarning(
                f"article {str(article_path)!r}: external address(es) {', '.join(urls) or 'in raw HTML'} shown as text"
                " without 'http(s)://': the story page is self-contained"
            ),
            stacklevel=2,
        )
    return SCHEME_RE.sub("", html_text)
