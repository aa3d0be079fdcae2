"""The rendered reports in a real browser: Debian's headless `chromium`, driven by Selenium
through Debian's `chromium-driver` (no browser or driver download). The index and the analysis
page are served from a temporary home by a stdlib HTTP server on 127.0.0.1; each must load with
no console error, uncaught exception or failed request (all of which the browser logs at level
SEVERE), and the analysis page must show every plot as a decoded image. Screenshots go to the
test's temporary folder.

Skipped when `chromium` or `chromedriver` is not on PATH (Debian: `apt-get install -y chromium
chromium-driver`, which `make browser` does)."""

import base64
import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

import pytest

from fixtures import synthetic as syn
from lib import answer, paths, record, reports, runner
from lib import plots as plots_module

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,  # a headless Chromium, over pages the analysis notebook made in a kernel
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="chromium or chromedriver is not on PATH (Debian: apt-get install -y chromium chromium-driver)",
    ),
]
PROFILE = syn.PROFILE
N_PLOTS = 8  # 07_analysis: seven per-run plots and the one across trainings


class Page:
    """One loaded page: what went wrong while loading it, JavaScript, a whole-page screenshot."""

    def __init__(self, driver, url: str):
        self.driver = driver
        driver.get(url)  # returns after the load event
        # the browser's log reaches the driver asynchronously: on a loaded machine a failed
        # request's entry came after the first read; read until two reads 0.25 s apart add nothing
        self.problems, quiet, deadline = [], 0, time.monotonic() + 5
        while quiet < 2 and time.monotonic() < deadline:
            new = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            self.problems += new
            quiet = 0 if new else quiet + 1
            time.sleep(0.25)

    def eval(self, expression: str):
        return self.driver.execute_script(f"return {expression}")

    def size(self, max_height: int = 100_000) -> tuple[int, int]:
        """The page's whole layout in CSS pixels (what a screenshot at scale 1 covers)."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        return int(size["width"]), int(min(size["height"], max_height))

    def screenshot(self, path: Path, max_height: int = 6000) -> Path:
        width, height = self.size(max_height)
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        path = Path(path)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _size(png: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(png) as img:
        return img.size


def _has_color(png: Path, color, tolerance: int = 8) -> bool:
    """Whether some pixel of the screenshot has `color` (hex or matplotlib RGB floats)."""
    import numpy as np
    from matplotlib.colors import to_rgb
    from PIL import Image

    want = np.round(np.array(to_rgb(color)) * 255)
    with Image.open(png) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=int)
    return bool((np.abs(pixels - want).max(axis=-1) <= tolerance).any())


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--hide-scrollbars",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console, exceptions, failed loads
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Synthetic runs, the analysis executed and rendered (code shown, and a copy with code
    hidden), the index written; all served over HTTP; one browser for the module."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBOOK_HOME", str(home))
        syn.write_grid(PROFILE)
        study = home / "study_cot.csv"
        study.write_text(syn.study_csv_text())
        record.record_status(PROFILE, "cot_hard", "06_benchmark", status="failed", error="RuntimeError: engine died")
        out_dir = paths.reports_root(PROFILE) / paths.PROFILE_RUN
        outcome = runner.execute(
            "07_analysis",
            paths.PROFILE_RUN,
            out_dir,
            {"profile": PROFILE, "external_csvs": [str(study)], "n_boot": 300},
            hide_input=False,
        )
        assert outcome.status == "finished", outcome.error
        record.record_status(
            PROFILE, paths.PROFILE_RUN, "07_analysis", status="finished", seconds=outcome.seconds, error=None
        )
        reports.render_html(out_dir / "07_analysis.ipynb", out_dir / "07_analysis.hidden.html", hide_input=True)
        reports.write_index(PROFILE)
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(home / "reports"))
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        browser = _browser()
        shots = tmp_path_factory.mktemp("screenshots")
        try:
            yield {
                "url": f"http://127.0.0.1:{server.server_address[1]}/{PROFILE}",
                "browser": browser,
                "shots": shots,
                "dir": paths.reports_root(PROFILE),
            }
        finally:
            browser.quit()
            server.shutdown()
            server.server_close()


def test_index_opens_clean_and_lists_runs(site):
    page = Page(site["browser"], f"{site['url']}/index.html")
    assert page.problems == []
    failed = page.eval("document.querySelector('#run-cot_hard').innerText")
    assert "failed" in failed and "RuntimeError: engine died" in failed
    assert "missing" in page.eval("document.querySelector('#run-cod_medium').innerText")
    assert page.eval("document.querySelector('a[href=\"_profile/07_analysis.html\"]') !== null")
    shot = page.screenshot(site["shots"] / "index.png")
    print(f"screenshot: {shot}")
    assert _size(shot) == page.size()
    # the badges are painted (flat fills, whatever the fonts): the failed run's red, a measured run's green
    assert _has_color(shot, "#f8d0d0") and _has_color(shot, "#d4f4d4")


def test_analysis_page_shows_every_plot(site):
    page = Page(site["browser"], f"{site['url']}/_profile/07_analysis.html")
    assert page.problems == []
    images = page.eval(
        "[...document.images].map(i => ({png: i.src.startsWith('data:image/png;base64,'), "
        "w: i.naturalWidth, h: i.naturalHeight, done: i.complete}))"
    )
    plots = [i for i in images if i["png"]]
    assert len(plots) == len(images) == N_PLOTS  # a plot without data is text, not an image (plots.NoData)
    assert all(i["done"] and i["w"] > 0 and i["h"] > 0 for i in plots), plots
    assert page.eval("document.querySelectorAll('.jp-CodeCell .jp-InputArea-editor').length") > 0  # code shown here
    assert "CoD had the higher acceptance" in page.eval("document.body.innerText")
    shot = page.screenshot(site["shots"] / "analysis.png", max_height=100_000)
    print(f"screenshot: {shot}")
    assert _size(shot) == page.size()
    assert all(_has_color(shot, plots_module.CONFIG_COLORS[c]) for c in ("cot + spec", "cod + spec"))  # the bars
    site["analysis_height"] = page.size()[1]


def test_hidden_input_page_has_no_code(site):
    page = Page(site["browser"], f"{site['url']}/_profile/07_analysis.hidden.html")
    assert page.problems == []
    assert page.eval("document.querySelectorAll('.jp-CodeCell .jp-InputArea, .jp-InputArea-editor').length") == 0
    text = page.eval("document.body.innerText")
    assert "analysis.collect(" not in text and "record.save(" not in text and "Out[1" not in text
    assert "Speed-up and acceptance" in text
    assert page.eval("[...document.images].filter(i => i.naturalWidth > 0).length") == N_PLOTS
    shot = page.screenshot(site["shots"] / "analysis_hidden.png", max_height=100_000)
    assert _size(shot) == page.size()
    assert all(_has_color(shot, plots_module.CONFIG_COLORS[c]) for c in ("cot + spec", "cod + spec"))
    if "analysis_height" in site:  # the same page less its code cells: shorter, whatever the fonts
        assert page.size()[1] < site["analysis_height"]


def test_a_broken_page_is_caught(site):
    """The checks above can fail: a console error, an uncaught exception and a missing image show."""
    (site["dir"] / "broken.html").write_text(
        "<html><body><img src='missing.png'><script>console.error('boom'); undefined_name();</script></body></html>"
    )
    problems = " | ".join(Page(site["browser"], f"{site['url']}/broken.html").problems)
    assert "boom" in problems and "undefined_name" in problems and "404" in problems, problems


# The answer table: the one whose header row is answer.HEADER; where its header sits, the widths
# of every table against the page's, and every number each answer cell shows.
_ANSWER_JS = """
const want = arguments[0];
const tables = [...document.querySelectorAll('table')];
const answer = tables.find(t => { const h = [...t.querySelectorAll('tr')][0];
  return h && JSON.stringify([...h.children].map(c => c.innerText.trim())) === JSON.stringify(want); });
const page = document.documentElement.clientWidth;
return {page: page, scroll: document.documentElement.scrollWidth,
        wide: tables.map(t => t.getBoundingClientRect()).filter(r => r.right > page + 1).map(r => r.width),
        header_top: answer ? [...answer.querySelectorAll('tr')][0].getBoundingClientRect().bottom : null,
        cells: answer ? [...answer.querySelectorAll('tr')].slice(1).map(r => [...r.children].map(c => c.innerText)) : []};
"""


def _significant(number: str) -> int:
    digits = number.lstrip("+-−").replace(",", "").replace(".", "").lstrip("0")
    return len(digits) or 1


@pytest.mark.parametrize("page_path", ["index.html", "_profile/07_analysis.hidden.html", "_profile/07_analysis.html"])
def test_the_first_screen_holds_the_answer_and_tables_fit(site, page_path):
    """Issue 33: at 1400 x 900 the answer table's header is on the first screen, no table is
    wider than the page, and no answer cell shows a number of more than 4 significant digits."""
    import re

    page = Page(site["browser"], f"{site['url']}/{page_path}")
    assert page.problems == []
    got = site["browser"].execute_script(_ANSWER_JS, answer.HEADER)
    assert got["header_top"] is not None, "no answer table on the page"
    assert got["header_top"] <= 900, f"the answer table's header ends at {got['header_top']} px, below the first screen"
    assert got["wide"] == [] and got["scroll"] <= got["page"], got
    numbers = [n for row in got["cells"] for cell in row for n in re.findall(r"[-+−]?\d[\d,]*(?:\.\d+)?", cell)]
    assert numbers, got["cells"]
    assert max(map(_significant, numbers)) <= 4, [n for n in numbers if _significant(n) > 4]
