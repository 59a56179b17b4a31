"""Importers: public relevance datasets and plain tables of judged pairs → a searchrel dataset.

Each importer is one function returning ``(Dataset, ImportReport)``; :func:`save_import` writes both the
dataset and, when bad rows were skipped, their quarantine file. ``searchrel import ...`` wraps them.
"""

from searchrel.data.importers._assemble import save_import
from searchrel.data.importers._clean import clean_line, clean_text
from searchrel.data.importers._report import BadInputError, ImportReport
from searchrel.data.importers.crowdflower import import_crowdflower, read_translations
from searchrel.data.importers.esci import import_esci
from searchrel.data.importers.table import import_table, parse_fields, parse_scale

__all__ = ["BadInputError", "ImportReport", "clean_line", "clean_text", "import_crowdflower", "import_esci",
           "import_table", "parse_fields", "parse_scale", "read_translations", "save_import"]
