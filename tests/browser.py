"""Debian's chromium, launched the way the browser test and the screenshot script need it.

Never a downloaded browser: Playwright drives ``/usr/bin/chromium``; the flags keep
it from reaching for the network this machine does not have.
"""

import os
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("BOURBON_TEST_CHROMIUM", "/usr/bin/chromium"))
MISSING = f"{CHROMIUM} is missing: the browser tests did not run (apt-get install chromium)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
