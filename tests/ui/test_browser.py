"""The Dagster UI in a real browser: the webserver on the test database, driven by Chromium.

The pipeline is materialised first (tests/ui/conftest.py), then `dagster-webserver` serves
the project's Definitions from the same Postgres-backed instance, and headless Chromium
checks what a data engineer sees: every asset of the graph, and the latest calibration
materialisation's reliability diagram rendered as an image.

Every wait polls a state (the code location's load status and asset nodes over GraphQL, the
nodes drawn on the graph, the image decoded), never a fixed time: on a loaded machine it only
takes longer. The deadlines are generous; they only bound a wait that can never end.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.connection import dagster_storage_url
from predict_pipeline.definitions import defs
from predict_pipeline.defs.storage import storage_config

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
# Bounds on waits for states that should come; a loaded machine only slows them down.
DEADLINE_S = 600
UI_DEADLINE_MS = DEADLINE_S * 1000
# The page before the graph is measured; it is then resized so the whole graph fits.
VIEWPORT = {"width": 2400, "height": 1350}
# The graph's zoom in the picture: Dagster draws a node's full label from 0.6 up.
GRAPH_SCALE = 0.7

pytestmark = [
    pytest.mark.slow,  # end-to-end: `make test-fast` leaves it out
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no Chromium at /usr/bin/chromium (`make browser` installs it where root and apt "
        "are available); the browser test needs it",
    ),
]

T = TypeVar("T")


def _wait_until(state: Callable[[], T | None], what: str) -> T:
    """Poll `state` until it returns something truthy; fail naming `what` after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not (value := state()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached in {DEADLINE_S} s")
        time.sleep(0.5)
    return value


def _graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str, server: subprocess.Popen, log: Path) -> bool:
    if server.poll() is not None:
        pytest.fail(f"dagster-webserver exited: {log.read_text()}")
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _code_location_loaded(url: str) -> bool:
    """The project's code location has loaded its Definitions (a load error fails at once)."""
    workspace = _graphql(
        url,
        """{ workspaceOrError { __typename ... on Workspace { locationEntries {
             name loadStatus
             locationOrLoadError { __typename ... on PythonError { message } } } } } }""",
    )["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    for entry in workspace["locationEntries"]:
        error = entry["locationOrLoadError"] or {}
        if error.get("__typename") == "PythonError":
            pytest.fail(f"code location {entry['name']} failed to load: {error['message']}")
    return bool(workspace["locationEntries"]) and all(
        entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]
        for entry in workspace["locationEntries"]
    )


def _asset_names(url: str) -> list[str]:
    nodes = _graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    return sorted("/".join(node["assetKey"]["path"]) for node in nodes)


@pytest.fixture
def webserver(pipeline, tmp_path) -> Iterator[str]:
    """dagster-webserver on a free port, its instance the test database, serving every asset of
    the Definitions; killed afterwards."""
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
    log_path = tmp_path / "webserver.log"
    log = log_path.open("wb")
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
        _wait_until(lambda: _answers(url, server, log_path), "dagster-webserver answering")
        # The server answers before its code server has imported the Definitions.
        _wait_until(lambda: _code_location_loaded(url), "the code location LOADED")
        expected = sorted(key.to_user_string() for a in defs.assets or [] for key in a.specs_by_key)
        assert _asset_names(url) == expected
        # "Join the Dagster community" would open over the page: seen, as Skip would record.
        assert _graphql(url, "mutation { setNuxSeen }")["setNuxSeen"] is True
        assert _graphql(url, "{ shouldShowNux }")["shouldShowNux"] is False
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
        log.close()


def _latest_reliability_diagram(url: str) -> bool:
    """The latest `calibration_scores` materialisation carries its Markdown reliability diagram."""
    asset = _graphql(
        url,
        """{ assetOrError(assetKey: {path: ["calibration_scores"]}) { __typename
             ... on Asset { assetMaterializations(limit: 1) {
               metadataEntries { __typename label } } } } }""",
    )["assetOrError"]
    latest = asset.get("assetMaterializations") or []
    return (
        bool(latest)
        and {
            "label": "reliability_diagram",
            "__typename": "MarkdownMetadataEntry",
        }
        in latest[0]["metadataEntries"]
    )


# The graph's viewport is `[data-svg-viewport]`; its first child carries the zoom as
# `matrix(scale, 0, 0, scale, x, y)` and holds the <svg> of the laid-out graph. An asset node
# is a <foreignObject> drawn only while on screen; a group is one of class "group".
GRAPH_JS = """
() => {
  const viewport = document.querySelector('[data-svg-viewport]');
  const svg = viewport && viewport.querySelector(':scope > div > svg');
  if (!svg) return null;
  const box = viewport.getBoundingClientRect();
  const labels = [...viewport.querySelectorAll('foreignObject:not(.group) *')]
    .filter(el => el.children.length === 0 && el.textContent.trim())
    .map(el => ({text: el.textContent.trim(), r: el.getBoundingClientRect()}));
  return {
    viewport: {width: box.width, height: box.height},
    graph: {width: +svg.getAttribute('width'), height: +svg.getAttribute('height')},
    scale: new DOMMatrix(getComputedStyle(viewport.firstElementChild).transform).a,
    groups: viewport.querySelectorAll('foreignObject.group').length,
    assetNodes: viewport.querySelectorAll('foreignObject[style*="overflow"]').length,
    loading: viewport.innerText.includes('Loading'),
    shown: labels
      .filter(({r}) => r.width > 0 && r.left >= box.left && r.right <= box.right
                       && r.top >= box.top && r.bottom <= box.bottom)
      .map(({text}) => text),
  };
}
"""


def _graph(page) -> dict[str, Any]:
    return page.evaluate(GRAPH_JS)


def _wait_for_graph(page, what: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the drawn graph until `done` holds; on the deadline, fail with what was drawn."""
    deadline = time.monotonic() + DEADLINE_S
    while not ((graph := _graph(page)) and done(graph)):
        if time.monotonic() > deadline:
            pytest.fail(f"the asset graph: {what} not reached in {DEADLINE_S} s; drawn: {graph}")
        page.wait_for_timeout(250)  # the browser's own pace between two looks at the DOM
    return graph


# The UI is the same whichever PostgreSQL serves it: one server is enough.
@pytest.mark.parametrize("pg_admin_url", ["embedded"], indirect=True)
def test_asset_graph_and_reliability_diagram_in_chromium(webserver, tmp_path):
    screenshot = README_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "asset-graph.png"
    from playwright.sync_api import expect, sync_playwright

    asset_names = sorted(key.to_user_string() for a in defs.assets or [] for key in a.specs_by_key)
    groups = sorted({spec.group_name for a in defs.assets or [] for spec in a.specs})
    _wait_until(lambda: _latest_reliability_diagram(webserver), "calibration_scores materialised")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_DEADLINE_MS)
            page.goto(f"{webserver}/asset-groups")
            # Every group is drawn, collapsed.
            _wait_for_graph(page, "every group drawn", lambda g: g["groups"] == len(groups))
            for group in groups:
                expect(page.get_by_text(group, exact=True).last).to_be_visible(
                    timeout=UI_DEADLINE_MS
                )
            # The graph's own menu expands every group; the new layout then has asset nodes.
            # Empty canvas below the graph.
            page.mouse.click(VIEWPORT["width"] * 0.56, VIEWPORT["height"] - 40, button="right")
            page.get_by_role("menuitem", name="Expand all groups").click()
            graph = _wait_for_graph(page, "groups expanded", lambda g: g["assetNodes"] > 0)
            # Size the page so the expanded graph fits at GRAPH_SCALE: Dagster fits a graph to
            # its width when it lays it out, so after the reload (the URL keeps the expanded
            # groups) it is drawn whole, centred.
            chrome_w = VIEWPORT["width"] - graph["viewport"]["width"]
            chrome_h = VIEWPORT["height"] - graph["viewport"]["height"]
            fitted = {
                "width": math.ceil(chrome_w + graph["graph"]["width"] * GRAPH_SCALE),
                "height": math.ceil(chrome_h + graph["graph"]["height"] * GRAPH_SCALE + 40),
            }
            page.set_viewport_size(fitted)
            page.reload()
            graph = _wait_for_graph(
                page,
                "every asset node drawn whole with its label, its live data loaded",
                lambda g: (
                    g["assetNodes"] == len(asset_names)
                    and set(asset_names) <= set(g["shown"])
                    and not g["loading"]
                ),
            )
            assert graph["scale"] >= 0.6, graph  # full nodes, not the label-truncating minimal
            # The picture: the whole graph, every node labelled.
            screenshot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(screenshot))

            page.set_viewport_size(VIEWPORT)
            page.goto(f"{webserver}/assets/calibration_scores?view=events")
            expect(page.get_by_text("reliability_diagram", exact=True).first).to_be_visible(
                timeout=UI_DEADLINE_MS
            )
            page.get_by_text("[Show Markdown]").first.click()
            image = page.locator('img[src^="data:image/png;base64,"]').first
            expect(image).to_be_visible(timeout=UI_DEADLINE_MS)
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
            )
            assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [800, 600]
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
