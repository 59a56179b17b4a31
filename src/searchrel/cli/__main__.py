"""``python -m searchrel.cli``: the same CLI as the ``searchrel`` command."""

from searchrel.cli import app

app()
