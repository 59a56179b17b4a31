"""Reading a user's table file whatever its name: Parquet is known by its content (the ``PAR1`` magic), then the
suffix picks JSON lines, JSON, TSV or CSV. A file that none of them can read gets an error naming the file and the
formats accepted — never a decoder's traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from searchrel.data.dataset import DatasetError

FORMATS = "Parquet, CSV, TSV, JSON lines (.jsonl) or JSON"
PARQUET_MAGIC = b"PAR1"


def is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def table_format(path: Path) -> str:
    if is_parquet(path):
        return "parquet"
    suffix = path.suffix.lower()
    return {".jsonl": "jsonl", ".json": "json", ".tsv": "tsv", ".parquet": "parquet"}.get(suffix, "csv")


def read_parquet_table(path: str | Path):
    """The pyarrow table of a Parquet file (for its schema metadata), with a clear error when it is not one."""
    try:
        return pq.read_table(path)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable Parquet file ({e}); accepted formats: {FORMATS}") from None


def read_table(path: str | Path, dtype: dict | type | None = None) -> pd.DataFrame:
    """A DataFrame from a Parquet, CSV, TSV, JSON lines or JSON file; ``dtype`` applies to the text formats."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            return read_parquet_table(path).to_pandas()
        if fmt in ("jsonl", "json"):
            return pd.read_json(path, lines=fmt == "jsonl", dtype=dtype)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=dtype)
    except DatasetError:
        raise
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:
        raise DatasetError(f"{path}: cannot be read as {fmt.upper()} ({type(e).__name__}: {str(e)[:120]}); "
                           f"accepted formats: {FORMATS}") from None
