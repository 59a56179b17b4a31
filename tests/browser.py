"""Headless Chromium for the end-to-end page tests: Playwright driving the system's Chromium (Debian's
``chromium`` package, which ``.ci/run`` installs), never a browser Playwright downloads itself."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Chromium on a machine with no route out: no first-run, sync, component or background traffic, no sandbox
# (CI runs as root), no GPU.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Screenshots the page tests keep (the CI artefacts): tests/artifacts/ unless SEARCHREL_ARTIFACTS says where.
ARTIFACTS = Path(os.environ.get("SEARCHREL_ARTIFACTS", Path(__file__).parent / "artifacts"))


def chromium_path() -> str:
    """The system Chromium; a clear error when it is missing (``apt-get install chromium``)."""
    for name in (os.environ.get("SEARCHREL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name) or (name if Path(name).is_file() else None)):
            return path
    raise RuntimeError("no Chromium found: apt-get install chromium (or set SEARCHREL_CHROMIUM to its path)")


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator:
    """A fresh headless Chromium (own empty profile) and one page in it; closed on exit."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium_path(), headless=True,
                                                    args=FLAGS, viewport={"width": width, "height": height})
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            yield page
        finally:
            ctx.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as ``ARTIFACTS/name`` and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
