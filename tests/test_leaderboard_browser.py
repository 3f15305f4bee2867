"""The leaderboard's HTML page in a browser: headless Chromium (Debian's ``chromium`` package, driven by
Playwright without a browser download) opens it from disk, fetches nothing, shows its tables and plots,
and sorts the rows on a click on a column header. A screenshot of the page is kept in the test's
temporary folder; its path is printed and recorded as the test's ``screenshot`` property."""

from __future__ import annotations

import os
import shutil

import pytest
from test_ceiling import log_ceiling
from test_leaderboard import DATASET, log, scores

from bench.cli.leaderboard import leaderboard
from bench.evaluation import ceiling

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _absent(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path):
    """A Chromium browser context with a fresh profile in ``tmp_path``."""
    executable = shutil.which("chromium")
    if executable is None:
        _absent("Chromium is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _absent("playwright is not installed (pip install -e '.[dev]' -c constraints.txt)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=executable, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


@pytest.mark.slow
def test_the_page_renders_and_sorts_on_a_click(tracking_store, browser, tmp_path, record_property, capsys):
    for seed in (1, 2):
        log("mean", seed, scores(seed, 0.0))
        log("additive", seed, scores(seed, 0.1))
        log("linear", seed, scores(seed, 0.25))
    log_ceiling(1, 0.8)
    log_ceiling(2, 0.85)
    out = tracking_store / "boards"
    leaderboard(dataset=DATASET, metric="pearson_delta_de20,mse_de20", out=out)

    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((out / f"{DATASET}.html").as_uri())
    pearson, mse = (page.locator(f"table[data-metric={metric}]") for metric in ("pearson_delta_de20", "mse_de20"))

    def labels(table) -> list[str]:
        return table.locator("tbody tr td:first-child").all_inner_texts()

    def click(table, column: str) -> None:
        table.get_by_role("button", name=column, exact=True).click()

    ceiling_row, additive, linear, mean = ceiling.LABEL, "additive (baseline)", "linear (baseline, reference)", "mean (baseline)"
    assert labels(pearson) == labels(mse) == [ceiling_row, additive, linear, mean]
    assert pearson.locator("tbody td").first.is_visible()
    click(pearson, "all")  # higher is better: the best first
    assert labels(pearson) == [ceiling_row, linear, additive, mean]
    click(pearson, "all")
    assert labels(pearson) == [mean, additive, linear, ceiling_row]
    click(mse, "all")  # lower is better: the best first; the ceiling has no mse_de20 and stays last either way
    assert labels(mse) == [linear, additive, mean, ceiling_row]
    click(mse, "all")
    assert labels(mse) == [mean, additive, linear, ceiling_row]
    click(mse, "model")
    assert labels(mse) == [additive, ceiling_row, linear, mean]
    assert labels(pearson) == [mean, additive, linear, ceiling_row]  # each table sorts on its own

    images = page.locator("img")
    assert images.count() == 2 and all(images.nth(i).evaluate("image => image.naturalWidth > 0") for i in range(2))
    assert {url.split(":")[0] for url in requests} <= {"file", "data"}  # nothing from a network
    screenshot = tmp_path / "leaderboard.png"
    page.screenshot(path=screenshot, full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    record_property("screenshot", str(screenshot))
    with capsys.disabled():
        print(f"\nscreenshot of the leaderboard page: {screenshot}")
