"""Fixtures shared by every test package: the real tile server and the one headless Chromium.

The browser fixture is session-scoped and must be defined once: Playwright's sync API allows one
running instance per thread, so stage conftests must not import it again.
"""

import os
from pathlib import Path

import pytest

from tests.fixtures.browser import browser, page  # noqa: F401
from tests.fixtures.tileserver import tile_server  # noqa: F401
from tests.fixtures.wayback import wayback  # noqa: F401


@pytest.fixture(autouse=True, scope="session")
def _built_models_in_a_session_folder(tmp_path_factory):
    """Built ONNX backbones go to a folder of this session (and its scan workers), not the user's cache."""
    os.environ["AMBERWATCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("amberwatch-cache"))


TEXTY_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "texty-amber"


def pytest_sessionstart(session) -> None:
    """On CI (CI=true) the real-data tests must run: a missing ../shared/data/texty-amber stops the session instead of
    skipping them silently; elsewhere they skip, and say so."""
    if os.environ.get("CI", "").lower() == "true" and not (TEXTY_DATA / "positive").is_dir():
        where = TEXTY_DATA.resolve()
        raise pytest.UsageError(f"CI=true but the Texty data is not at {where} (see README, Development)")
