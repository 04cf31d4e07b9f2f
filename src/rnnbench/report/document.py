"""A report as a list of simple blocks, written out as Markdown (HTML lives in ``html.py``).

Both outputs render the same blocks, so report.md and report.html always say the same thing.
Text is plain; the only inline markup is `code`, which both renderers understand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass
class Para:
    text: str


@dataclass
class Banner:
    """A warning that must not be missed (the quick-mode notice)."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)  # right-align these columns


@dataclass
class Image:
    path: Path  # the PNG on disk; Markdown links it by name, HTML embeds it
    caption: str


@dataclass
class Media:
    """Listen-and-look item (the Samples section): audio players, one picture and file links.

    ``root`` is the report folder; ``audio`` (label, path), ``image`` and ``links`` (label,
    path) are files under it. Markdown links them by their paths relative to ``root``; HTML
    embeds the audio and the image as data URIs and links the other files relatively.
    """

    root: Path
    title: str
    caption: str
    audio: list[tuple[str, Path]] = field(default_factory=list)
    image: Path | None = None
    links: list[tuple[str, Path]] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()


Block = Heading | Para | Banner | Bullets | Table | Image | Media


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """Render blocks as GitHub-flavoured Markdown."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Banner):
            out.append(f"> **{b.text}**")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            numeric = b.numeric or [False] * len(b.header)
            lines = [
                "| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            if b.caption:
                lines.append("")
                lines.append(b.caption)
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            out.append(f"![{b.caption}]({b.path.name})\n\n{b.caption}")
        elif isinstance(b, Media):
            files = [*b.audio, *b.links]
            links = " · ".join(f"[{label}]({b.rel(p)})" for label, p in files)
            text = f"**{b.title}**: {b.caption}" + (f" {links}" if links else "")
            if b.image is not None:
                text += f"\n\n![{b.title}]({b.rel(b.image)})"
            out.append(text)
    return "\n\n".join(out) + "\n"
