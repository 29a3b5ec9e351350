"""The Dagster UI in a real browser: the webserver on the test database, driven by Chromium.

The pipeline is materialised first (tests/ui/conftest.py), then `dagster-webserver` serves
the project's Definitions from the same Postgres-backed instance, and headless Chromium
checks what a data engineer sees: every asset of the graph, and the latest calibration
materialisation's reliability diagram rendered as an image.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.dagster_storage import storage_config
from predict_pipeline.db.connection import dagster_storage_url
from predict_pipeline.definitions import defs

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's picture is refreshed only when asked, so a test run leaves the tree clean.
README_SCREENSHOT = PROJECT_ROOT / "docs" / "asset-graph.png"
UPDATE_SCREENSHOT = os.environ.get("PREDICT_UPDATE_SCREENSHOT") == "1"
STARTUP_TIMEOUT_S = 120
# Large enough that the whole graph, fitted to the page, keeps its node labels.
VIEWPORT = {"width": 2400, "height": 1350}
UI_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no Chromium at /usr/bin/chromium (`make browser` installs it where root and apt "
    "are available); the browser test needs it",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(pipeline, tmp_path) -> Iterator[str]:
    """dagster-webserver on a free port, its instance the test database; killed afterwards."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = {
        "storage": storage_config(dagster_storage_url(pipeline.db_url)),
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(json.dumps(instance))  # JSON is YAML
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PREDICT_DATABASE_URL": pipeline.db_url,
    }
    log = (tmp_path / "webserver.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the code server it spawns goes too
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {(tmp_path / 'webserver.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver did not answer in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def _skip_community_dialog(page) -> None:
    """A fresh instance opens "Join the Dagster community" over the page; skip it if shown."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=3000)
    except PlaywrightTimeout:  # the dialog did not open
        return
    skip.click()


def _make_room_for_the_graph(page) -> None:
    """Collapse the navigation and the asset tree, so the graph fits at a readable zoom."""
    page.get_by_role("button", name="Hide navigation").click()
    jump = page.get_by_placeholder("Jump to…").bounding_box()
    assert jump is not None
    # The tree's collapse button is the icon right of its "Jump to…" box.
    page.mouse.click(jump["x"] + jump["width"] + 20, jump["y"] + jump["height"] / 2)


def _graph_controls(page) -> list:
    """The icon buttons of the graph's bottom-right column, top to bottom: zoom in, zoom out, ..."""
    viewport = page.viewport_size
    controls = [
        (box["y"], button)
        for button in page.locator("button").all()
        if (box := button.bounding_box())
        and box["x"] > viewport["width"] - 100
        and box["y"] > viewport["height"] / 2
    ]
    return [button for _, button in sorted(controls, key=lambda c: c[0])]


def _zoom_out_until_all_shown(page, names: list[str], tmp_path: Path) -> None:
    """Expanding the groups keeps the zoom, so the graph can overflow the page: zoom out until
    every asset's node is drawn with its label (or show what was drawn instead)."""
    for _ in range(8):
        page.wait_for_timeout(800)  # layout and zoom animate
        if all(page.get_by_text(name, exact=True).first.is_visible() for name in names):
            return
        _graph_controls(page)[1].click()
    page.screenshot(path=str(tmp_path / "failed.png"))
    missing = [n for n in names if not page.get_by_text(n, exact=True).first.is_visible()]
    pytest.fail(f"assets not drawn on the graph: {missing} (see {tmp_path / 'failed.png'})")


# The UI is the same whichever PostgreSQL serves it: one server is enough.
@pytest.mark.parametrize("pg_admin_url", ["embedded"], indirect=True)
def test_asset_graph_and_reliability_diagram_in_chromium(webserver, tmp_path):
    screenshot = README_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "asset-graph.png"
    from playwright.sync_api import expect, sync_playwright

    asset_names = sorted(key.to_user_string() for a in defs.assets or [] for key in a.specs_by_key)
    groups = sorted({spec.group_name for a in defs.assets or [] for spec in a.specs})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(f"{webserver}/asset-groups")
            for group in groups:
                expect(page.get_by_text(group, exact=True).last).to_be_visible()
            _skip_community_dialog(page)
            _make_room_for_the_graph(page)
            # Several groups start collapsed; the graph's own menu expands them all.
            # Empty canvas below the graph.
            page.mouse.click(VIEWPORT["width"] * 0.56, VIEWPORT["height"] - 40, button="right")
            page.get_by_role("menuitem", name="Expand all groups").click()
            _zoom_out_until_all_shown(page, asset_names, tmp_path)
            # The picture: the whole graph, every node labelled.
            screenshot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(screenshot))

            page.goto(f"{webserver}/assets/calibration_scores?view=events")
            _skip_community_dialog(page)
            expect(page.get_by_text("reliability_diagram", exact=True).first).to_be_visible()
            page.get_by_text("[Show Markdown]").first.click()
            image = page.locator('img[src^="data:image/png;base64,"]').first
            expect(image).to_be_visible()
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
            )
            assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [800, 600]
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
