"""The listening page in a real browser: headless Debian Chromium through its own chromedriver.

The page is opened twice. First from file://, as a user opens the folder: players, sorting,
filters, every player loading its audio, and a console without errors. Then over a local
http.server thread, because Chromium refuses fetch() on file:// URLs: there every audio and
image source is fetched and decoded by the browser itself (decodeAudioData, createImageBitmap).
Selenium Manager is never asked for anything: the driver path is given, and the test fails if
Selenium tries to reach it anyway.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.test_report_listening import make_runs

# Debian's chromium and chromium-driver on PATH; HSM_BENCH_CHROMIUM / HSM_BENCH_CHROMEDRIVER name others
CHROMIUM = os.environ.get("HSM_BENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or ""
CHROMEDRIVER = os.environ.get("HSM_BENCH_CHROMEDRIVER") or shutil.which("chromedriver") or ""
SYSTEMS = ("oracle_irm", "oracle_mixture")
N_ITEMS = 4
SECONDS = 2.0  # Chromium drops the last 256 samples of a Vorbis file held in one Ogg page (<~1.5 s here)
SR = 16000

_MISSING = ("needs chromium and chromedriver on PATH (Debian's chromium, chromium-driver: .ci/run installs them) or "
            "HSM_BENCH_CHROMIUM / HSM_BENCH_CHROMEDRIVER")
pytestmark = [
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)), reason=_MISSING),
    pytest.mark.slow,
]

# every player asked to load its metadata from disk: resolves to the sources that failed
LOAD_PLAYERS = """
const done = arguments[arguments.length - 1];
const players = Array.from(document.querySelectorAll('audio'));
Promise.all(players.map(a => new Promise(resolve => {
  if (a.readyState >= 1) return resolve(null);
  a.addEventListener('loadedmetadata', () => resolve(null), { once: true });
  a.addEventListener('error', () => resolve(a.getAttribute('src') + ': media error ' + (a.error && a.error.code)),
                     { once: true });
  a.preload = 'metadata';
  a.load();
}))).then(r => done({ failed: r.filter(Boolean), durations: players.map(a => a.duration) }));
"""

# every audio and image source fetched and decoded by the browser
DECODE_SOURCES = """
const done = arguments[arguments.length - 1];
const ctx = new OfflineAudioContext(1, 1, arguments[0]);
const check = async (el) => {
  const src = el.getAttribute('src');
  try {
    const r = await fetch(src);
    if (!r.ok) return { src, error: 'HTTP ' + r.status };
    if (el.tagName === 'AUDIO') {
      const buf = await ctx.decodeAudioData(await r.arrayBuffer());
      return { src, samples: buf.length, rate: buf.sampleRate };
    }
    const bmp = await createImageBitmap(await r.blob());
    return { src, width: bmp.width, height: bmp.height };
  } catch (e) {
    return { src, error: String(e) };
  }
};
Promise.all(Array.from(document.querySelectorAll('audio, img'), check)).then(done);
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from reports.collect import load
    from reports.listening import write_page
    from tests.conftest import build_tiny_testset

    base = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSM_BENCH_HOME", str(base / "home"))
        testset = build_tiny_testset(base / "tiny" / "v1", n_items=N_ITEMS, seconds=SECONDS, seed=3)
        col = load([make_runs(base / "runs", testset, SYSTEMS)])
    write_page(col, base / "listen")
    return col, base / "listen"


@pytest.fixture
def driver(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_manager(*args, **kwargs):
        raise AssertionError("Selenium Manager was called: it would download a driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_manager)
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
                "--mute-audio", "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    d.set_script_timeout(60)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def server(page):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(page[1])))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _ids(driver):
    return [td.text for td in driver.find_elements("css selector", "#items tbody tr td.id")]


def _header(driver, label):
    heads = driver.find_elements("css selector", "#items thead th[data-col]")
    return next(th for th in heads if th.text.strip() == label)


def test_listening_page_in_chromium(page, driver, server, tmp_path):
    col, out = page
    man = col.manifest("tiny")

    # --- from disk, as a user opens it
    driver.get((out / "index.html").as_uri())
    assert driver.find_element("id", "count").text == f"{N_ITEMS} of {N_ITEMS} rows shown"  # the script ran
    rows = driver.find_elements("css selector", "#items tbody tr")
    assert len(rows) == N_ITEMS
    assert len(driver.find_elements("tag name", "audio")) == N_ITEMS * (2 + len(SYSTEMS))
    loaded = driver.execute_async_script(LOAD_PLAYERS)
    assert loaded["failed"] == []
    assert loaded["durations"] == pytest.approx([SECONDS] * N_ITEMS * (2 + len(SYSTEMS)), abs=1e-3)

    # sorting: by SNR up, then down; the original order was worst first by mean SDRi
    before = _ids(driver)
    by_snr = sorted(man.index, key=lambda i: man.loc[i, "snr_db"])
    _header(driver, "SNR (dB)").click()
    assert _ids(driver) == by_snr
    _header(driver, "SNR (dB)").click()
    assert _ids(driver) == by_snr[::-1]
    assert before != by_snr or before != by_snr[::-1]
    assert _header(driver, "SNR (dB)").get_attribute("aria-sort") == "descending"

    # filters: the task hides rows, a system's box hides its columns
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "f-task")).select_by_value("extract")
    n_extract = int((man["task"] == "extract").sum())
    assert len([r for r in rows if r.is_displayed()]) == n_extract
    assert driver.find_element("id", "count").text == f"{n_extract} of {N_ITEMS} rows shown"
    Select(driver.find_element("id", "f-task")).select_by_value("")
    driver.find_element("css selector", "#filters input[data-sys='1']").click()
    visible = [a for a in driver.find_elements("tag name", "audio") if a.is_displayed()]
    assert len(visible) == N_ITEMS * (2 + len(SYSTEMS) - 1)
    driver.find_element("css selector", "#filters input[data-sys='1']").click()
    assert _severe(driver) == []

    # --- over http: every source fetched and decoded by the browser
    driver.get(f"{server}/index.html")
    results = driver.execute_async_script(DECODE_SOURCES, SR)
    assert len(results) == 2 * N_ITEMS * (2 + len(SYSTEMS))
    assert [r for r in results if "error" in r] == []
    for r in results:
        if r["src"].endswith(".ogg"):
            assert (r["samples"], r["rate"]) == (int(SECONDS * SR), SR)  # every sample back, none added
        else:
            assert (r["width"], r["height"]) == (192, 64)
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "listening-page.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert _severe(driver) == []
