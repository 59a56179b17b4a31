"""The report as format-neutral blocks — sections of paragraphs, tables, figures and notes — that
``render`` turns into HTML or Markdown. Text is plain (the renderer escapes it); ``Markup`` carries both forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Markup:
    """A cell or paragraph given in both output forms: ``html`` is trusted (already escaped), ``md`` is plain."""

    html: str
    md: str


@dataclass(frozen=True)
class Bold:
    text: str


Cell = str | Markup | Bold


@dataclass
class Paragraph:
    text: str | Markup


@dataclass
class Note:
    """A one-line aside: a part the run lacks, a problem reading one, an experiment's own note."""

    text: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    numeric: set[int] = field(default_factory=set)  # column indices aligned right
    caption: str = ""


@dataclass
class Figure:
    path: Path  # a PNG next to the report
    alt: str
    caption: str = ""


@dataclass
class Details:
    """Secondary material: folded away in HTML, a plain sub-block in Markdown."""

    summary: str
    blocks: list


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]
