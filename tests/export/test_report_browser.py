"""The report of a real Dask run, opened as a person would: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium). No console errors, every chart drawn, a screenshot saved."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("bokeh")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# Every Bokeh canvas inside the page's shadow roots, with how many of its pixels are not blank.
CANVASES_JS = """
const found = [];
function walk(node) {
  if (!node) return;
  if (node.tagName === 'CANVAS') found.push(node);
  if (node.shadowRoot) walk(node.shadowRoot);
  for (const child of node.children || []) walk(child);
}
walk(document.body);
return found.map(c => {
  let inked = 0;
  try {
    const ctx = c.getContext('2d');
    if (ctx && c.width && c.height) {
      const px = ctx.getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < px.length; i += 16) {
        if (px[i + 3] > 0 && (px[i] < 235 || px[i + 1] < 235 || px[i + 2] < 235)) inked++;
      }
    }
  } catch (e) { inked = -1; }
  return {w: c.width, h: c.height, inked: inked};
});
"""


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/setup.sh --all installs them "
                    "as root: apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1300,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_opens_in_chromium_without_errors_and_draws_every_chart(dask_run, browser, tmp_path):
    from helpers import poll_for

    path = tmp_path / "report.html"
    rep = dask_run.api.report(dask_run.workflow_id, str(path))
    browser.get(path.as_uri())

    expected = {"timeline", "concurrency", "graph", "activities", "telemetry"}
    names = poll_for(lambda: browser.execute_script(
        "if (!window.Bokeh || !Bokeh.documents.length) return null;"
        "const roots = Bokeh.documents[0].roots().map(r => r.name);"
        "return Object.keys(Bokeh.index).length >= roots.length ? roots : null;"), 30, message="Bokeh views rendered")
    assert expected <= set(names)

    # each plot paints one large canvas (beside an empty overlay layer and small toolbar/legend icons)
    plots = 4 + len(rep.data.telemetry["series"])  # timeline, running, graph, activities + one per telemetry metric

    def drawn():
        big = [c for c in browser.execute_script(CANVASES_JS) if c["w"] >= 400 and c["h"] >= 150]
        painted = [c for c in big if c["inked"] > 500]
        return painted if len(painted) == plots else None

    poll_for(drawn, 30, message=f"{plots} chart canvases painted")
    # the timeline's data reached the browser: one bar per task that ran
    bars = browser.execute_script(
        "const p = Bokeh.documents[0].get_model_by_name('timeline');"
        "return p.renderers[0].data_source.get_length();")
    assert bars == len(rep.data.timeline["lane"]) == 21  # every task but the one that never ran
    text = browser.find_element("tag name", "body").text
    assert "export-test" in text and "partition 2: 3 negative values" in text
    assert len(browser.find_elements("css selector", "#activity-table tr")) == 1 + 7
    assert len(browser.find_elements("css selector", "details.error-group")) == 2

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1300, min(height + 40, 8000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
