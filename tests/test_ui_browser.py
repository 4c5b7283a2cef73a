"""`dynpose ui` in a real browser: Debian's chromium, headless, driven through its chromedriver by Selenium.

One synthetic clip is ingested; from the browser, one product of its shard is materialized (the
asset's Materialize button, the shard picked as the partition) and the run succeeds; the rest is
materialized as the CLI does it, then the `benchmark_report` asset shows its plots and the asset
graph every group and every product. Nothing is
downloaded: the browser and driver are the system's (`./install.sh --test` installs them with
apt-get) and Selenium Manager is kept offline.

Screenshots go to a temporary folder, or to ``$DYNPOSE_UI_SCREENSHOTS`` (the ones in docs/img are
made with ``DYNPOSE_UI_SCREENSHOTS=docs/img``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dynpose.domain.synth import generate_suite
from dynpose.graph.orchestrate import materialize
from dynpose.graph.products import PRODUCTS
from dynpose.graph.settings import IngestSettings
from dynpose.storage.ingest import ingest
from dynpose.storage.lake import Lake

from .conftest import _free_port

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
GROUPS = ("raw", "filters", "annotations", "eval")
SHARD = "s00000"
WAIT = 120  # seconds for any one thing to show in the UI (2 shared cores)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver not installed (./install.sh --test, or apt-get install chromium chromium-driver)",
)


@pytest.fixture
def lake(tmp_path) -> tuple[str, str]:
    """One tiny synthetic clip, ingested, with clip_catalog computed (which also registers its shard
    as a dynamic partition of the Dagster instance the UI uses)."""
    settings = tmp_path / "settings.yaml"
    settings.write_text("annotation:\n  videos: all\nbaseline_poses:\n  methods: [identity]\n")
    generate_suite(tmp_path / "suite", "tiny", seed=0, limit=1)
    url = str(tmp_path / "lake")
    ingest(str(tmp_path / "suite"), Lake(url), IngestSettings())
    outcomes = materialize(url, str(settings), select=["clip_catalog"], progress=False)
    assert [o.action for o in outcomes] == ["computed"]
    return url, str(settings)


@pytest.fixture
def ui(lake, tmp_path):
    """`dynpose ui` on a free loopback port; its whole process group is stopped afterwards."""
    url, settings = lake
    port = _free_port()
    log = open(tmp_path / "ui.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynpose.cli", "--lake", url, "--settings", settings, "ui", "--port", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is None and "clip_catalog" in _asset_keys(base), 180, "the code location", tmp_path)
        yield base, url, settings
    finally:
        # SIGTERM lets dagster dev stop its webserver, daemon and code server; whatever of the group
        # (a run worker, a slow code server) is still there after that is killed.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        log.close()


@pytest.fixture
def browser(monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1920,1200",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path) -> Path:
    out = Path(os.environ.get("DYNPOSE_UI_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_ui_in_a_browser_launches_a_shard_run_and_shows_the_graph_and_the_report(ui, browser, shots, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, url, settings = ui
    d = browser

    # One shard of a product materialized from the UI: its Materialize button, the shard picked as
    # the partition, one run launched; the daemon behind `dynpose ui` starts it and it succeeds.
    d.get(f"{base}/assets/sampled_frames")
    _dismiss_welcome(d)
    _click(d, "//button[starts-with(normalize-space(), 'Materialize')]")
    _click(d, "//*[@role='dialog']//*[contains(text(), 'Select a partition')]")
    _find(d, "//input[@placeholder='Filter partitions']").send_keys(SHARD)
    option = f"*[normalize-space()='{SHARD}' and not(*)]"  # in the list under the filter box
    _click(d, f"//input[@placeholder='Filter partitions']/ancestor::*[.//{option}][1]//{option}")
    _find(d, "//input[@placeholder='Filter partitions']").send_keys(Keys.ESCAPE)
    _click(d, "//*[@role='dialog']//button[normalize-space()='Launch 1 run']")
    run = _wait(lambda: _ui_runs(base), WAIT, "the run launched from the UI", tmp_path)[0]
    status = _wait(lambda: _finished(base, run), 300, f"run {run} to finish", tmp_path)
    assert status == "SUCCESS", f"run {run} ended {status}: {_tail(tmp_path)}"
    d.get(f"{base}/runs/{run}")
    _find(d, "//*[normalize-space()='Success']")
    assert Lake(url).read_product("sampled_frames").num_rows > 0

    # Everything else, as `dynpose materialize` computes it (the UI run's shard is fresh, so kept).
    outcomes = materialize(url, settings, progress=False)
    assert not [o for o in outcomes if o.action == "failed"], outcomes
    assert {(o.product, o.action) for o in outcomes if o.product == "sampled_frames"} == {("sampled_frames", "skipped")}

    # The report's plots in its materialization metadata: markdown with an inline PNG.
    d.get(f"{base}/assets/benchmark_report")
    _dismiss_welcome(d)
    _click(d, "//tr[.//*[normalize-space()='ate_histogram']]//*[contains(text(), 'Show Markdown')]")
    _find(d, "//*[@role='dialog']//img[starts-with(@src, 'data:image/png')]")
    decoded = "return [...document.querySelectorAll('[role=dialog] img')].some(i => i.naturalWidth > 0)"
    _wait(lambda: d.execute_script(decoded), WAIT, "the plot to decode", tmp_path)
    time.sleep(1)  # the dialog fades in
    d.save_screenshot(str(shots / "ui_benchmark_report.png"))

    # The global asset graph, every group expanded: every group and every product is on it.
    d.get(f"{base}/asset-groups")
    _dismiss_welcome(d)
    _click(d, "//button[.//*[@aria-label='settings'] and not(normalize-space())]")  # the graph's settings menu
    _click(d, "//*[@role='menu']//*[contains(text(), 'Expand all groups')]")
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wanted = set(GROUPS) | set(PRODUCTS)
    missing = wanted
    for _ in range(6):  # zoom out until nothing is outside the viewport (the graph draws only what is in it)
        time.sleep(1.5)
        missing = {n for n in wanted if not _shown(_graph_texts(d), n)}
        if not missing:
            break
        _click(d, "//button[.//*[@aria-label='zoom_out']]")
    assert not missing, f"not on the asset graph: {sorted(missing)}"
    d.save_screenshot(str(shots / "ui_asset_graph.png"))


# --- helpers ---------------------------------------------------------------------------------------


def _wait(condition, timeout: float, what: str, tmp_path: Path):
    """The first truthy value of condition() within timeout seconds (exceptions count as not yet)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; UI log: {_tail(tmp_path)}")


def _tail(tmp_path: Path) -> str:
    log = tmp_path / "ui.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(none)"


def _find(d, xpath: str, timeout: float = WAIT):
    """The first displayed element matching xpath, once the UI has drawn it (React redraws often)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def displayed(driver):
        return next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), False)

    wait = WebDriverWait(d, timeout, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(displayed, f"nothing shown matches {xpath}")


def _click(d, xpath: str, timeout: float = WAIT) -> None:
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    deadline = time.time() + timeout
    while True:
        try:
            _find(d, xpath, max(1.0, deadline - time.time())).click()
            return
        except (ElementClickInterceptedException, StaleElementReferenceException):
            if time.time() > deadline:
                raise
            _skip_welcome(d, 0.5)  # a dialog that came up late covers the page


def _dismiss_welcome(d) -> None:
    """Wait for the page's Materialize button, then skip the 'Join the Dagster community' dialog
    that a fresh browser profile gets once."""
    _find(d, "//button[starts-with(normalize-space(), 'Materialize')]")
    _skip_welcome(d, 3)


def _skip_welcome(d, timeout: float) -> None:
    from selenium.common.exceptions import TimeoutException

    try:
        _find(d, "//*[@role='dialog']//button[normalize-space()='Skip']", timeout=timeout).click()
    except TimeoutException:
        pass


def _graph_texts(d) -> list[str]:
    """The text lines of the asset graph itself (its nodes are HTML inside the SVG's foreignObjects)."""
    texts = d.execute_script("return [...document.querySelectorAll('foreignObject > *')].map(e => e.innerText)")
    return [line.strip() for t in texts if t for line in t.splitlines() if line.strip()]


def _shown(texts: list[str], name: str) -> bool:
    """name is one of texts, or one the graph shortened in the middle ('reproje…_benchmark')."""
    for t in texts:
        if t == name:
            return True
        head, sep, tail = t.partition("…")
        if sep and len(head) >= 3 and name.startswith(head) and name.endswith(tail) and len(name) > len(t):
            return True
    return False


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["data"]


def _asset_keys(base: str) -> set[str]:
    nodes = _graphql(base, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    return {n["assetKey"]["path"][-1] for n in nodes}


def _ui_runs(base: str) -> list[str]:
    """Ids of the runs launched from the UI (the CLI's in-process runs are not tagged so)."""
    query = """{ runsOrError(filter: {tags: [{key: "dagster/from_ui", value: "true"}]}) {
      ... on Runs { results { runId } } } }"""
    return [r["runId"] for r in _graphql(base, query)["runsOrError"]["results"]]


def _finished(base: str, run: str) -> str | None:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    status = _graphql(base, query, {"id": run})["runOrError"]["status"]
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None
