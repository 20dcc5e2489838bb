"""Fixtures shared by every test package: the real tile server and the one headless Chromium.

The browser fixture is session-scoped and must be defined once: Playwright's sync API allows one
running instance per thread, so stage conftests must not import it again.
"""

from tests.fixtures.browser import browser, page  # noqa: F401
from tests.fixtures.tileserver import tile_server  # noqa: F401
