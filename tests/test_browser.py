"""The rendered reports in a real browser: Debian's headless `chromium`, driven over the
DevTools protocol through a pipe (no extra package). The index and the analysis page are
served from a temporary home by a stdlib HTTP server on 127.0.0.1; each must load with no
console error, uncaught exception or failed request, and the analysis page must show every
plot as a decoded image. Screenshots go to the test's temporary folder.

Skipped when `chromium` is not on PATH (Debian: `apt-get install -y chromium`)."""

import functools
import http.server
import threading

import pytest

from fixtures import cdp
from fixtures import synthetic as syn
from lib import paths, reports, runner

pytestmark = pytest.mark.skipif(
    cdp.executable() is None, reason="chromium is not on PATH (Debian: apt-get install -y chromium)"
)
PROFILE = syn.PROFILE
N_PLOTS = 7


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
        reports.record_status(PROFILE, "cot_hard", "06_benchmark", status="failed", error="RuntimeError: engine died")
        out_dir = paths.reports_root(PROFILE) / paths.PROFILE_RUN
        outcome = runner.execute("07_analysis", paths.PROFILE_RUN, out_dir,
                                 {"profile": PROFILE, "external_csvs": [str(study)], "n_boot": 300}, hide_input=False)
        assert outcome.status == "finished", outcome.error
        reports.record_status(PROFILE, paths.PROFILE_RUN, "07_analysis", status="finished", seconds=outcome.seconds, error=None)
        reports.render_html(out_dir / "07_analysis.ipynb", out_dir / "07_analysis.hidden.html", hide_input=True)
        reports.write_index(PROFILE)
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(home / "reports")))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        browser = cdp.Browser(tmp_path_factory.mktemp("chromium-profile"))
        shots = tmp_path_factory.mktemp("screenshots")
        try:
            yield {"url": f"http://127.0.0.1:{server.server_address[1]}/{PROFILE}", "browser": browser, "shots": shots}
        finally:
            browser.close()
            server.shutdown()
            server.server_close()


def test_index_opens_clean_and_lists_runs(site):
    page = site["browser"].open(f"{site['url']}/index.html")
    assert page.problems == []
    failed = page.eval("document.querySelector('#run-cot_hard').innerText")
    assert "failed" in failed and "RuntimeError: engine died" in failed
    assert "missing" in page.eval("document.querySelector('#run-cod_medium').innerText")
    assert page.eval("document.querySelector('a[href=\"_profile/07_analysis.html\"]') !== null")
    shot = page.screenshot(site["shots"] / "index.png")
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_analysis_page_shows_every_plot(site):
    page = site["browser"].open(f"{site['url']}/_profile/07_analysis.html")
    assert page.problems == []
    images = page.eval("[...document.images].map(i => ({png: i.src.startsWith('data:image/png;base64,'), "
                       "w: i.naturalWidth, h: i.naturalHeight, done: i.complete}))")
    plots = [i for i in images if i["png"]]
    assert len(plots) >= N_PLOTS
    assert all(i["done"] and i["w"] > 0 and i["h"] > 0 for i in plots), plots
    assert page.eval("document.querySelectorAll('.jp-CodeCell .jp-InputArea-editor').length") > 0  # code shown here
    assert "CoD had the higher acceptance" in page.eval("document.body.innerText")
    shot = page.screenshot(site["shots"] / "analysis.png")
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 50_000


def test_hidden_input_page_has_no_code(site):
    page = site["browser"].open(f"{site['url']}/_profile/07_analysis.hidden.html")
    assert page.problems == []
    assert page.eval("document.querySelectorAll('.jp-CodeCell .jp-InputArea, .jp-InputArea-editor').length") == 0
    text = page.eval("document.body.innerText")
    assert "analysis.collect(" not in text and "record.save(" not in text and "Out[1" not in text
    assert "Speed-up and acceptance" in text
    assert page.eval("[...document.images].filter(i => i.naturalWidth > 0).length") >= N_PLOTS
    page.screenshot(site["shots"] / "analysis_hidden.png")
