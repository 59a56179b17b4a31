"""What an import reports: the row numbers it speaks in, the bad rows it set aside (with reasons, for the
quarantine file) and the summary it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from searchrel.data.dataset import DatasetError

ROW = "_row"    # 1-based record number in the source (header not counted)
LINE = "_line"  # physical line where the record starts (CSV/JSONL only), for finding it in an editor
QUARANTINE_NAME = "quarantine.csv"


class BadInputError(DatasetError):
    """The source file is unusable or holds bad rows; the message names the file, the row and the reason."""


# --- the report ----------------------------------------------------------------------------------

@dataclass
class ImportReport:
    """What an import did: every row read is accounted for as imported, skipped (bad) or duplicate."""

    source: str
    rows_read: int = 0
    queries: int = 0
    items: int = 0
    judgments: int = 0
    skipped: int = 0                 # bad rows (quarantined with skip_bad; otherwise the import stops)
    duplicates: int = 0              # repeated judged (query, item) pairs: the first is kept, these dropped
    duplicate_conflicts: int = 0     # ... of which carried a different label than the kept one
    quarantine: Path | None = None   # where the bad rows went (set by save_import)
    out: Path | None = None          # where the dataset went (set by save_import)
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)  # importer-specific counts, e.g. translated_queries
    bad_rows: pd.DataFrame | None = field(default=None, repr=False)  # original columns + row + reason

    def summary(self) -> list[tuple[str, str]]:
        """(what, value) lines for printing; nothing dropped goes unmentioned."""
        lines = [("source", self.source), ("rows read", f"{self.rows_read:,}"), ("queries", f"{self.queries:,}"),
                 ("items", f"{self.items:,}"), ("judgments", f"{self.judgments:,}"),
                 ("bad rows skipped", f"{self.skipped:,}"),
                 ("duplicate pairs dropped (first kept)",
                  f"{self.duplicates:,} ({self.duplicate_conflicts:,} with a different label)")]
        lines += [(k.replace("_", " "), f"{v:,}") for k, v in self.extra.items()]
        if self.quarantine is not None:
            lines.append(("quarantine", str(self.quarantine)))
        if self.out is not None:
            lines.append(("dataset", str(self.out)))
        lines.append(("time", f"{self.seconds:.1f} s"))
        return lines


# --- bad rows ------------------------------------------------------------------------------------

class BadRows:
    """Collects bad rows with a reason each; ``finish`` stops at the first one unless bad rows are skipped."""

    def __init__(self, source: Path, raw: pd.DataFrame, skip_bad: bool):
        self.source, self.raw, self.skip_bad = source, raw, skip_bad
        self.rows: list[int] = []
        self.reasons: list[str] = []

    def add(self, row: int, reason: str) -> None:
        self.rows.append(int(row))
        self.reasons.append(reason)

    def drop(self, df: pd.DataFrame, mask: pd.Series, reason: str | pd.Series) -> pd.DataFrame:
        """Record the rows of ``df`` where ``mask`` holds (reason: one text, or one per row) and return the rest."""
        mask = mask.fillna(True).astype(bool)
        if mask.any():
            why = reason[mask] if isinstance(reason, pd.Series) else pd.Series(reason, index=df.index[mask])
            self.rows.extend(int(r) for r in df.loc[mask, ROW])
            self.reasons.extend(str(r) for r in why)
        return df[~mask]

    def __len__(self) -> int:
        return len(self.rows)

    def finish(self) -> pd.DataFrame | None:
        """Raise on the earliest bad row unless skipping; return the quarantine table (or None if none)."""
        if not self.rows:
            return None
        order = sorted(range(len(self.rows)), key=self.rows.__getitem__)
        if not self.skip_bad:
            i = order[0]
            more = f"; {len(self.rows) - 1:,} more bad row(s)" if len(self.rows) > 1 else ""
            raise BadInputError(f"{self.source.name}, {self.where(self.rows[i])}: {self.reasons[i]}{more} "
                                f"(use --skip-bad to quarantine bad rows and go on)")
        reasons = pd.DataFrame({"row": [self.rows[i] for i in order], "reason": [self.reasons[i] for i in order]})
        original = self.raw.set_index(ROW).drop(columns=[LINE], errors="ignore")
        original = original.loc[reasons["row"]].reset_index(drop=True)
        original = original.drop(columns=[c for c in ("row", "reason") if c in original])
        return pd.concat([original, reasons], axis=1)

    def where(self, row: int) -> str:
        if LINE in self.raw:
            line = self.raw.loc[self.raw[ROW] == row, LINE]
            if len(line):
                return f"row {row} (line {int(line.iloc[0])})"
        return f"row {row}"
