"""Text cleaning for imported fields.

HTML entities unescaped, tags stripped (``<style>``/``<script>`` bodies dropped, block tags such as
``<p>``/``<br>``/``<li>`` become line breaks), mojibake fixed with ``ftfy``, and whitespace collapsed: runs of
spaces/tabs become one space, and every run of line breaks (blank lines included) becomes a single ``\\n`` —
paragraphs stay apart, empty lines do not survive. Titles and queries are cleaned the same way and then put on one
line (:func:`clean_line`). Empty text stays ``""``.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import ftfy
import pandas as pd
from ftfy.fixes import uncurl_quotes

from searchrel.progress import track

# --- text cleaning -------------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "br", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
               "dt", "dd", "section", "article", "blockquote", "pre", "hr"}
_SKIP_TAGS = {"style", "script", "head", "title"}
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newline (tabs, nbsp, ...)
_BREAKS = re.compile(r"\s*\n\s*")


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Text content of an HTML fragment (entities unescaped); plain text passes through unchanged."""
    if _TAG_START.search(text):
        parser = _TextOnly()
        parser.feed(text)
        parser.close()
        return "".join(parser.parts)
    return html.unescape(text) if "&" in text else text


# UTF-8 read as Windows-1252, as ftfy sometimes leaves it: ftfy judges each line on its own, so a lone "â„¢"
# (™) in an otherwise clean line is not fixed. Only the leads Â/Ã (U+0080..U+00FF) and â (U+2000..U+2FFF), the
# common ones in English text, are tried; a run that does not decode as UTF-8 is left alone.
_CONT = "\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_LEFTOVER = re.compile(f"[ÂÃ][{_CONT}]|â[{_CONT}]{{2}}")
_STRAY_A = re.compile(r"(?<=[a-z])Â(?=['\s])")  # "GodÂ's": the rest of a quote that a re-encoding lost


def _redecode(m: re.Match) -> str:
    try:
        return m.group(0).encode("cp1252").decode("utf-8")
    except UnicodeError:
        return m.group(0)


def fix_mojibake(text: str) -> str:
    """ftfy, then the leftovers it judged too sparse to fix; curly quotes become straight ones."""
    text = ftfy.fix_text(text, unescape_html=False, uncurl_quotes=False)
    text = _STRAY_A.sub("", _LEFTOVER.sub(_redecode, text))
    return uncurl_quotes(text)


def clean_text(text: object) -> str:
    """HTML stripped, mojibake fixed, whitespace collapsed; line breaks kept as a single ``\\n``."""
    if not isinstance(text, str) or not text:
        return ""
    text = strip_html(text)
    if not text.isascii():  # pure ASCII cannot hold mojibake; skipping ftfy there saves most of its cost
        text = fix_mojibake(text)
    text = _SPACES.sub(" ", text)
    return _BREAKS.sub("\n", text).strip()


def clean_line(text: object) -> str:
    """:func:`clean_text` on one line (for titles and queries)."""
    return clean_text(text).replace("\n", " ")


def clean_column(s: pd.Series, one_line: bool, what: str) -> pd.Series:
    """Clean a column, each distinct value once (sources repeat products and queries a lot)."""
    uniq = pd.unique(s)
    fn = clean_line if one_line else clean_text
    it = track(uniq, f"cleaning {what}") if len(uniq) > 20_000 else uniq
    cleaned = {v: fn(v) for v in it}
    return s.map(cleaned).astype(object)
