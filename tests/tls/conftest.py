"""The console tests' real Chromium, for the HTTPS console test."""
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, browser, login, page  # noqa: F401
