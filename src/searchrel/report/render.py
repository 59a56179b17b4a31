"""Write a report document as one self-contained HTML page (inline CSS, charts as base64 PNG, no scripts, nothing
fetched) and as Markdown that links the PNG files beside it."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from searchrel.report.document import Bold, Details, Document, Figure, Markup, Note, Paragraph, Section, Table

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, "Noto Sans CJK JP",
       "Hiragino Sans", "Yu Gothic", sans-serif; color: #1d2330;
       margin: 0; background: #f6f7f9; }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 12px; border-bottom: 2px solid #e1e4ea; padding-bottom: 6px; }
.sub { color: #5b6475; margin: 0 0 12px; }
nav { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 8px 0 18px; }
nav a { color: #2457c5; text-decoration: none; }
section { background: #fff; border: 1px solid #e1e4ea; border-radius: 8px; padding: 16px 20px; margin: 0 0 18px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e6e8ee; text-align: left; vertical-align: top; }
th { background: #f0f2f6; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; }
td small { color: #6b7385; }
caption { caption-side: bottom; text-align: left; color: #5b6475; font-size: 12px; padding-top: 4px; }
.scroll { overflow-x: auto; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceef2; }
figcaption { color: #5b6475; font-size: 12px; }
.note { color: #6b5d2e; background: #fbf6e6; border-left: 3px solid #e0c25c; padding: 4px 10px; margin: 6px 0; }
details summary { cursor: pointer; color: #2457c5; margin: 8px 0; }
.dist { display: inline-flex; align-items: flex-end; gap: 1px; height: 22px; vertical-align: middle; }
.dist span { display: inline-block; width: 7px; background: #4c78a8; }
footer { color: #8a91a0; font-size: 12px; padding-bottom: 24px; }
"""


def _cell_html(c) -> str:
    if isinstance(c, Markup):
        return c.html
    if isinstance(c, Bold):
        return f"<strong>{html.escape(c.text)}</strong>"
    return html.escape(str(c))


def _table_html(t: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in t.numeric else ""

    head = "".join(f"<th{cls(i)}>{html.escape(c)}</th>" for i, c in enumerate(t.columns))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_cell_html(c)}</td>" for i, c in enumerate(row)) + "</tr>\n"
                   for row in t.rows)
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table></div>'


def _block_html(b) -> str:
    if isinstance(b, Paragraph):
        return f"<p>{b.text.html if isinstance(b.text, Markup) else html.escape(b.text)}</p>"
    if isinstance(b, Note):
        return f'<p class="note">{html.escape(b.text)}</p>'
    if isinstance(b, Table):
        return _table_html(b)
    if isinstance(b, Figure):
        data = base64.b64encode(b.path.read_bytes()).decode("ascii")
        cap = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
        return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">{cap}</figure>'
    if isinstance(b, Details):
        inner = "\n".join(_block_html(x) for x in b.blocks)
        return f"<details><summary>{html.escape(b.summary)}</summary>\n{inner}\n</details>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def _section_html(s: Section) -> str:
    body = "\n".join(_block_html(b) for b in s.blocks)
    return f'<section id="{html.escape(s.id)}">\n<h2>{html.escape(s.title)}</h2>\n{body}\n</section>'


def to_html(doc: Document) -> str:
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title)}</a>' for s in doc.sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = "\n".join(_section_html(s) for s in doc.sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<header>\n<h1>{html.escape(doc.title)}</h1>\n<p class=\"sub\">{html.escape(doc.subtitle)}</p>\n"
            f"<nav>{nav}</nav>\n</header>\n<main>\n{sections}\n</main>\n"
            f"<footer>Written by <code>searchrel report</code>, {stamp}.</footer>\n</body>\n</html>\n")


# --- Markdown -------------------------------------------------------------------------------------------------

def _md_text(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _md_inline(text: str) -> str:
    """Prose from the data in Markdown: no raw HTML gets through."""
    return str(text).replace("<", "&lt;")


def _cell_md(c) -> str:
    if isinstance(c, Markup):
        return _md_text(c.md)
    if isinstance(c, Bold):
        return f"**{_md_text(c.text)}**"
    return _md_text(c)


def _table_md(t: Table) -> str:
    cols = [_md_text(c) or " " for c in t.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(cols))) + "|"]
    lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"_{_md_text(t.caption)}_"]
    return "\n".join(lines)


def _block_md(b) -> str:
    if isinstance(b, Paragraph):
        return b.text.md if isinstance(b.text, Markup) else _md_inline(b.text)
    if isinstance(b, Note):
        return f"> {_md_text(b.text)}"
    if isinstance(b, Table):
        return _table_md(b)
    if isinstance(b, Figure):
        return f"![{_md_text(b.alt)}]({b.path.name})" + (f"\n\n_{_md_text(b.caption)}_" if b.caption else "")
    if isinstance(b, Details):
        return f"**{_md_inline(b.summary)}**\n\n" + "\n\n".join(_block_md(x) for x in b.blocks)
    raise TypeError(f"unknown report block {type(b).__name__}")


def to_markdown(doc: Document) -> str:
    parts = [f"# {_md_inline(doc.title)}", _md_inline(doc.subtitle),
             " · ".join(f"[{s.title}](#{s.id})" for s in doc.sections)]
    for s in doc.sections:
        parts.append(f'<a id="{s.id}"></a>\n\n## {_md_inline(s.title)}')
        parts += [_block_md(b) for b in s.blocks]
    return "\n\n".join(parts) + "\n"
