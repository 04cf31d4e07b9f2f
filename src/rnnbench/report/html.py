"""One self-contained HTML page from the report's blocks: inline CSS, figures as data URIs.

The page loads nothing from anywhere: no scripts, no fonts; images and audio are data URIs.
The only links are to the sample files (MIDI, WAV) written next to it, for download.
"""

from __future__ import annotations

import base64
import html
import re

from rnnbench.report.document import Banner, Block, Bullets, Heading, Image, Media, Para, Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.caption { font-size: 0.9em; color: #555; }
.banner { background: #fff3cd; border: 2px solid #d39e00; padding: 0.8em 1em;
          font-weight: bold; margin: 1em 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
.media { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; margin: 1em 0; }
.media .players { min-width: 18em; } .media audio { display: block; margin: 0.3em 0 0.8em; }
.media img { max-width: 640px; width: 100%; height: auto; }
"""

AUDIO_TYPES = {".ogg": "audio/ogg", ".wav": "audio/wav", ".flac": "audio/flac"}


def _inline(text: str) -> str:
    """Escape text and turn `code` spans into <code>."""
    parts = re.split(r"`([^`]*)`", str(text))
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
        return f"<h{b.level}{anchor}>{_inline(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Banner):
        return f'<div class="banner">{_inline(b.text)}</div>'
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        numeric = b.numeric or [False] * len(b.header)
        head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td{' class=num' if n else ''}>{_inline(c)}</td>"
                for c, n in zip(row, numeric, strict=False)
            )
            + "</tr>"
            for row in b.rows
        )
        caption = f'<p class="caption">{_inline(b.caption)}</p>' if b.caption else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{caption}"
    if isinstance(b, Image):
        data = base64.b64encode(b.path.read_bytes()).decode("ascii")
        return (
            f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
            f'<figcaption class="caption">{_inline(b.caption)}</figcaption></figure>'
        )
    if isinstance(b, Media):
        return _media(b)
    raise TypeError(f"unknown report block {type(b).__name__}")


def _data_uri(path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _media(b: Media) -> str:
    players = "".join(
        f'<div>{_inline(label)}<audio controls preload="metadata" '
        f'src="{_data_uri(p, AUDIO_TYPES.get(p.suffix.lower(), "audio/ogg"))}"></audio></div>'
        for label, p in b.audio
    )
    links = " · ".join(
        f'<a href="{html.escape(b.rel(p))}" download>{_inline(label)}</a>' for label, p in b.links
    )
    image = (
        f'<img alt="{html.escape(b.title)}" src="{_data_uri(b.image, "image/png")}">'
        if b.image is not None
        else ""
    )
    return (
        f'<div class="media"><div class="players"><p><strong>{_inline(b.title)}</strong></p>'
        f'<p class="caption">{_inline(b.caption)}</p>{players}'
        f'<p class="caption">{links}</p></div>{image}</div>'
    )


def to_html(blocks: list[Block], title: str) -> str:
    """Render blocks as one standalone HTML document."""
    body = "\n".join(_block(b) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
