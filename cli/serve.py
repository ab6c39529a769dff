"""``gsi serve``: the web viewer (``web/`` of the source tree) on localhost, with .gsi files to open."""

from __future__ import annotations

import json
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import click

from .common import err_console, safe

WEB = Path(__file__).resolve().parent.parent / "web"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}
_ASSETS = ("index.html", "viewer.js", "viewer.css", "gsi.js", "render.js", "gl.js", "vendor/fzstd.mjs")


def collect(paths: tuple[Path, ...]) -> list[Path]:
    """``.gsi`` files named in ``paths``: files as given, folders searched recursively, in sorted order."""
    out: list[Path] = []
    for path in paths:
        out += sorted(p for p in path.rglob("*.gsi") if p.is_file()) if path.is_dir() else [path]
    return out


def make_server(files: list[Path], host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server of the viewer's assets, ``/files.json`` and ``/files/I/NAME`` (nothing else)."""
    listing = [{"url": f"files/{i}/{quote(p.name)}", "name": p.name} for i, p in enumerate(files)]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = unquote(urlparse(self.path).path).lstrip("/") or "index.html"
            if path == "files.json":
                return self._send(json.dumps(listing).encode(), "application/json")
            parts = path.split("/")
            if len(parts) == 3 and parts[0] == "files" and parts[1].isdigit() and int(parts[1]) < len(files):
                try:
                    return self._send(files[int(parts[1])].read_bytes(), "application/octet-stream")
                except OSError:
                    return self.send_error(404)
            if path in _ASSETS:
                return self._send((WEB / path).read_bytes(), _TYPES[Path(path).suffix])
            self.send_error(404)

        def _send(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it local).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the viewer in the web browser.")
def serve(paths: tuple[Path, ...], host: str, port: int, open_browser: bool) -> None:
    """Serve the web viewer on localhost, with the .gsi files in PATHS (files, or folders searched recursively).

    The viewer decodes in the browser (a JavaScript decoder of the spec), pans and
    zooms with re-rendering at screen resolution (WebGL2), shows the header and
    metadata and can draw each Gaussian's ellipse. Files can also be opened or
    dropped on the page. Ctrl-C stops the server.

    \b
    Examples:
      gsi serve splats/
      gsi serve cat.gsi dog.gsi --port 8080 --no-open
    """
    if not (WEB / "index.html").is_file():
        raise click.ClickException(f"the viewer's files are not installed ({WEB} is missing; run from a source tree)")
    files = collect(paths)
    server = make_server(files, host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    err_console().print(f"serving the viewer at {safe(url)} with {len(files)} file(s); Ctrl-C stops")
    if open_browser:
        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
