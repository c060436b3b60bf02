"""The local console: fleet map, per-window figures, pipeline health and data, live in a browser.

    start_console(runtime, port=None) -> ConsoleServer   serve it (`.url`, `.stop()`); see server.py
    write_report(path, runtime, summary) -> Path         the same views as one self-contained HTML file

The page, its script and its style are this package's static files, served by the runtime itself:
nothing is fetched from the internet (no CDN, no fonts, no map tiles; the map is drawn in SVG).
"""

from tributary.console.report import write_report
from tributary.console.server import ConsoleServer, start_console

__all__ = ["ConsoleServer", "start_console", "write_report"]
