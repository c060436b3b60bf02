"""The console's fixtures: a runtime on the project's template with the console served, and a browser.

The browser is Debian's Chromium driven by Playwright (Playwright's own browser download is not used).
Where it is missing, the browser tests are skipped with the command that installs it.
"""

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import REPO_ROOT

from tributary.console import ConsoleServer
from tributary.runtime.app import Runtime, RuntimeOptions

# Debian's chromium first; GitHub's Ubuntu runners come with Google Chrome. TRIBUTARY_CHROMIUM names another.
BROWSER_COMMANDS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MISSING = "no chromium for the browser tests: sudo apt-get install chromium (or make browser)"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
SCREENSHOTS = REPO_ROOT / ".tributary" / "screenshots"
LOOPBACK_PREFIXES = ("http://127.0.0.1:", "file://", "data:", "about:", "blob:")


@dataclass
class Browser:
    """A page, what it logged as errors and every request it tried outside loopback (aborted)."""

    page: object
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def chromium():
    """Playwright's Chromium, launched from the system browser; skipped with the install command if absent."""
    executable = os.environ.get("TRIBUTARY_CHROMIUM") or next(filter(None, map(shutil.which, BROWSER_COMMANDS)), None)
    if executable is None or not Path(executable).exists():
        if os.environ.get("CI"):  # CI must run them: a missing browser fails there instead
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: pip install -r requirements-dev.txt")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium) -> Iterator[Browser]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    watched = Browser(page)
    page.on("console", lambda message: watched.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))

    def refuse_outside(route):
        if route.request.url.startswith(LOOPBACK_PREFIXES):
            route.continue_()
        else:
            watched.outside.append(route.request.url)
            route.abort()

    page.route("**/*", refuse_outside)
    yield watched
    context.close()


@pytest.fixture(scope="module")
def console_runtime(tmp_path_factory) -> Iterator[tuple[Runtime, ConsoleServer]]:
    """The project's template running (2 s tumbling windows, quick retries, a trace) with its console served."""
    options = RuntimeOptions(
        template_path=REPO_ROOT / "template.yaml",
        parameter_overrides={"TumblingWindowInSeconds": "2"},
        function_log=io.StringIO(),
        trace_path=tmp_path_factory.mktemp("trace") / "trace.jsonl",
        keep_trace=True,  # the report's timeline
        retry_delay_s=0.05,
        idle_read_interval_s=0.1,
    )
    with Runtime(options) as runtime:
        console = ConsoleServer(runtime, interval_s=0.3).start()
        try:
            yield runtime, console
        finally:
            console.stop()
            runtime.aws.reset()  # moto's backends are process-wide: leave nothing for the next module
