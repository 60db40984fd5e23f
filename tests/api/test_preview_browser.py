"""A preview shown by a real browser: Debian's chromium, headless, loads a page with an <img>.

The app runs on werkzeug's server in a thread, which also serves the page, so the image is
fetched over HTTP exactly as a frontend would fetch it.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.dicom_factory import write_ct_file
from tests.helpers import create_patient, upload
from tests.tools import require_tool

PAGE = "/preview-page.html"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
IMAGE = (
    "<img src=\"{src}\" onload=\"document.title = 'loaded ' + this.naturalWidth + 'x' + "
    'this.naturalHeight" onerror="document.title = \'failed\'">'
)


@pytest.fixture
def served(app) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The app on a real HTTP server (a free port) plus pages put into the returned dict."""
    pages: dict[str, bytes] = {}

    def wsgi(environ, start_response):
        if environ["PATH_INFO"] in pages:
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [pages[environ["PATH_INFO"]]]
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", pages
    finally:
        server.shutdown()
        thread.join()


def title_in_chromium(url: str, profile: str) -> str:
    """The document title once chromium has loaded `url` (images included)."""
    chromium = require_tool("chromium")
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"<title>(.*?)</title>", done.stdout)
    assert match, done.stdout[:2000]
    return match[1]


def test_the_preview_renders_as_an_img_in_chromium(served, client, tmp_path):
    base, pages = served
    path = write_ct_file(tmp_path / "ct.dcm", rows=40, columns=30)
    scan = upload(client, create_patient(client), path.read_bytes(), "ct.dcm").get_json()["id"]
    pages[PAGE] = IMAGE.format(src=f"/api/scans/{scan}/preview.png?window=mediastinum").encode()
    assert title_in_chromium(base + PAGE, str(tmp_path / "profile")) == "loaded 30x40"
    # The same page fails to render what is not an image (a 404 JSON body).
    pages[PAGE] = IMAGE.format(src=f"/api/scans/{'0' * 32}/preview.png").encode()
    assert title_in_chromium(base + PAGE, str(tmp_path / "profile2")) == "failed"
