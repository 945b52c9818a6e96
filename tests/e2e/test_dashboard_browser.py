"""Issue 16's browser acceptance: the dashboard, built from pinned npm packages, served over a
backfilled sample, renders in headless Chromium the figures DuckDB computes from the events --
read from the page's text, not from the JavaScript -- and its first view transfers under 1 MB.

Screenshots go to ``$CLICKSTREAM_ETL_ARTIFACTS`` (else the test's temporary folder)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from load.rollup import LocalStore, hll_estimate, hll_merge
from pipeline.app.cli import main
from pipeline.app.dashboard import serve
from pipeline.bundled import sample_logs
from tests.browser_support import chromium
from tests.functional.test_rollup_duckdb import EVENTS_SQL

pytestmark = pytest.mark.e2e
FIRST_VIEW_LIMIT = 1_000_000


def backfill_and_roll_up(logs: Path, dest: Path) -> duckdb.DuckDBPyConnection:
    assert main(["backfill", str(logs), "--output", str(dest), "--workers", "1", "--rollup"]) == 0
    connection = duckdb.connect()
    connection.execute(EVENTS_SQL.format(root=dest.as_posix()))
    return connection


@contextmanager
def served(dest: Path) -> Iterator[tuple[str, Any]]:
    server = serve(LocalStore(dest), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()


def one(connection: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = connection.execute(sql).fetchone()
    assert row is not None
    return row[0]


def count(n: float) -> str:
    return f"{round(n):,}"


def duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def wait_ready(driver: Any, state: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda d: d.find_element("css selector", "body").get_attribute("data-ready") in (state, "error")
    )
    ready = driver.find_element("css selector", "body").get_attribute("data-ready")
    assert ready == state, driver.find_element("id", "status").text


def tile(driver: Any, metric: str) -> tuple[str, str]:
    node = driver.find_element("css selector", f'[data-metric="{metric}"]')
    value = node.find_element("css selector", ".value").text
    previous = node.find_elements("css selector", ".previous")
    return value, previous[0].text if previous else ""


def table(driver: Any, panel: str) -> list[list[str]]:
    rows = driver.find_elements("css selector", f"#{panel} tbody tr")
    return [[cell.text for cell in row.find_elements("css selector", "td")] for row in rows]


def totals(connection: duckdb.DuckDBPyConnection, where: str = "true") -> dict[str, str]:
    visits = one(connection, f"select count(*) from visits where {where}")
    bounces = one(connection, f"select count(*) filter (where views = 1 and not engaged) from visits where {where}")
    return {
        "visitors": count(one(connection, f"select count(distinct visitor) from keyed where {where}")),
        "visits": count(visits),
        "pageviews": count(one(connection, f"select count(*) from keyed where kind = 'page_view' and {where}")),
        "bounce_rate": f"{100 * bounces / visits:.1f}%",
        "visit_duration": duration(one(connection, f"select sum(length) from visits where {where}") / visits / 1000),
    }


def artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CLICKSTREAM_ETL_ARTIFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
def test_the_dashboard_renders_the_events_figures_in_a_browser(tmp_path: Path) -> None:
    shots = artefacts(tmp_path)
    sample = backfill_and_roll_up(sample_logs(), tmp_path / "sample")
    logs = tmp_path / "logs"
    for day in range(1, 5):  # four days: a range of two, compared with the two before
        assert main(["generate-logs", str(logs), "--files", "1", "--lines-per-file", "120", "--hours", "1",
                     "--seed", str(day % 2), "--start", f"2024-11-0{day}T10"]) == 0  # fmt: skip
    days = backfill_and_roll_up(logs, tmp_path / "days")

    with chromium() as driver, served(tmp_path / "sample") as (base, server):
        # GIVEN the sample's one day, WHEN the first view opens, THEN every tile and table is DuckDB's
        driver.get(base)
        wait_ready(driver, "2024-11-15..2024-11-15|||true")
        driver.save_screenshot(str(shots / "dashboard-sample.png"))
        for metric, expected in totals(sample).items():
            assert tile(driver, metric) == (expected, "previous period: no data"), metric
        assert not driver.find_element("id", "realtime").is_displayed()  # no collector: no real-time tile
        pages = sample.execute(
            "select coalesce(page_urlpath, ''), count(*) from keyed where kind = 'page_view' group by 1"
        ).fetchall()
        shown = {row[0]: row[1:] for row in table(driver, "pages")}
        entries = dict(sample.execute("select entry, count(*) from visits where views > 0 group by 1").fetchall())
        exits = dict(sample.execute("select exit, count(*) from visits where views > 0 group by 1").fetchall())
        top = sorted(pages, key=lambda r: (-r[1], r[0]))[:20]
        assert list(shown) == [page for page, _ in top]
        for page, views in top:
            assert shown[page] == [count(views), count(entries.get(page, 0)), count(exits.get(page, 0))], page
        label = (
            "case when refr_source <> '' then refr_source when refr_medium <> '' then '(' || refr_medium || ')' "
            "else '(direct)' end"
        )
        sources = dict(sample.execute(f"select {label}, count(*) from visits group by 1").fetchall())
        assert {row[0]: row[1] for row in table(driver, "sources")} == {k: count(v) for k, v in sources.items()}
        campaigns = sample.execute(
            "select mkt_campaign || ' · ' || mkt_source || ' / ' || mkt_medium, count(*) from visits "
            "where mkt_campaign <> '' group by 1"
        ).fetchall()
        assert {r[0]: r[1] for r in table(driver, "campaigns")} == {k: count(v) for k, v in campaigns}
        for panel, column in (("devices", "dvce_type"), ("browsers", "br_family"), ("os", "os_family")):
            expected = dict(sample.execute(f"select {column}, count(*) from visits group by 1").fetchall())
            assert {r[0]: r[1] for r in table(driver, panel)} == {
                k or "(unknown)": count(v) for k, v in expected.items()
            }
        hourly = dict(
            sample.execute("select event_hour::int, count(*) from keyed where kind = 'page_view' group by 1").fetchall()
        )
        points = driver.find_elements("css selector", "#series circle")
        assert {
            p.get_attribute("data-label"): p.get_attribute("data-value")
            for p in points
            if p.get_attribute("data-value") != "0"
        } == {f"{h:02d}:00": str(v) for h, v in hourly.items()}

        # The first view's transfer: what the browser fetched, and what the server sent.
        fetched = driver.execute_script(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
            ".reduce((n, e) => n + Math.max(e.transferSize, e.encodedBodySize), 0)"
        )
        assert 0 < fetched < FIRST_VIEW_LIMIT and 0 < server.bytes_sent < FIRST_VIEW_LIMIT
        print(f"first view: {fetched:,} bytes fetched by the browser, {server.bytes_sent:,} bytes of bodies sent")

        # WHEN a page row is clicked THEN the view is filtered by that page
        driver.find_element("xpath", "//section[@id='pages']//td[text()='/products']").click()
        wait_ready(driver, "2024-11-15..2024-11-15|/products||true")
        assert "page /products" in driver.find_element("id", "filter").text
        assert tile(driver, "pageviews")[0] == count(pages[[p for p, _ in pages].index("/products")][1])
        assert tile(driver, "visits")[0] == count(entries["/products"])
        driver.save_screenshot(str(shots / "dashboard-page-filter.png"))
        # ... and by a source, through the address
        driver.get(base + "#from=2024-11-15&to=2024-11-15&source=Google")
        wait_ready(driver, "2024-11-15..2024-11-15||Google|true")
        google = totals(sample, "refr_source = 'Google'")
        for metric in ("visits", "bounce_rate", "visit_duration"):
            assert tile(driver, metric)[0] == google[metric], metric
        driver.find_element("id", "clear-filter").click()
        wait_ready(driver, "2024-11-15..2024-11-15|||true")

        # GIVEN four days WHEN two are shown THEN visitors are the merged sketches' estimate (the
        # JavaScript's HyperLogLog, equal to Python's) and the previous two days are compared
        with served(tmp_path / "days") as (days_base, _):
            driver.get(days_base + "#from=2024-11-03&to=2024-11-04")
            wait_ready(driver, "2024-11-03..2024-11-04|||true")
            driver.save_screenshot(str(shots / "dashboard-range.png"))
            sketches = {
                row["date"]: row["visitors_hll"]
                for path in sorted((tmp_path / "days/rollups/site").glob("date=*/*.parquet"))
                for row in pq.read_table(path).to_pylist()
            }
            merged = round(hll_estimate(hll_merge([sketches["2024-11-03"], sketches["2024-11-04"]])))
            previous = round(hll_estimate(hll_merge([sketches["2024-11-01"], sketches["2024-11-02"]])))
            value, before = tile(driver, "visitors")
            assert value == count(merged) and before.startswith(f"previous {count(previous)} (")
            now = totals(days, "event_date between '2024-11-03' and '2024-11-04'")
            then = totals(days, "event_date between '2024-11-01' and '2024-11-02'")
            for metric in ("visits", "pageviews", "bounce_rate", "visit_duration"):
                value, before = tile(driver, metric)
                assert value == now[metric] and before.startswith(f"previous {then[metric]} ("), metric
            points = driver.find_elements("css selector", "#series circle")
            assert [p.get_attribute("data-label") for p in points] == ["2024-11-03", "2024-11-04"]


def test_the_real_time_tile_shows_the_collectors_current_visitors(tmp_path: Path) -> None:
    """Issue 16 item 3: with a realtime_url the tile reads the collector's GET /realtime."""
    from selenium.webdriver.support.ui import WebDriverWait

    from extract.collector import CollectorDeps
    from extract.realtime import MemoryRealtimeCounter, VisitorMark
    from pipeline.app.local.collector_server import CollectorServer
    from tests.conftest import make_config

    config = make_config({"collector.realtime_table": "rt", "collector.realtime_salt": "s"}).collector
    counter = MemoryRealtimeCounter()
    now_s = 1_732_000_000
    for n, age_s in enumerate((10, 120, 299, 400)):  # three inside the five minutes, one outside
        counter.mark(VisitorMark(f"{n:016x}", now_s - age_s, now_s + 900))
    deps = CollectorDeps(config, writer=None, record_target_bytes=0, counter=counter, clock=lambda: now_s)  # type: ignore[arg-type]
    collector = CollectorServer(deps)
    collector.start()
    store = LocalStore(tmp_path)  # no rollups: the tile does not wait for them
    server = serve(store, 0, realtime_url=f"{collector.url}/realtime")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium() as driver:
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
            node = driver.find_element("id", "realtime")
            WebDriverWait(driver, 20).until(lambda _d: node.get_attribute("data-ready") in ("true", "error"))
            assert node.get_attribute("data-ready") == "true", node.text
            assert node.is_displayed()
            assert node.find_element("css selector", ".value").text == "3"
            assert node.find_element("css selector", ".previous").text == "last 5 minutes, as of 07:06:40 UTC"
    finally:
        server.shutdown()
        server.server_close()
        collector.stop()
