"""The rollups' pure core (load/rollup.py): visits, bounces, bots, the HyperLogLog registers, the plan."""

from __future__ import annotations

from load.rollup import (
    HLL_ERROR_BOUND,
    HLL_REGISTERS,
    SESSION_GAP_MS,
    DayPlan,
    RollupEvent,
    StoredObject,
    assign_visits,
    day_digest,
    hll_estimate,
    hll_merge,
    hll_registers,
    manifest,
    plan_rollups,
    roll_up_day,
)

MINUTE = 60_000
T0 = 1_731_661_200_000  # 2024-11-15T09:00:00Z


def ev(n: int, minutes: float, kind: str = "page_view", **fields: object) -> RollupEvent:
    values: dict[str, object] = {"ip_address": "192.0.2.1", "useragent": "Firefox", "page_path": "/"}
    values.update(fields)
    return RollupEvent(f"e{n:03d}", kind, 9, T0 + int(minutes * MINUTE), **values)  # type: ignore[arg-type]


def test_given_no_session_id_when_events_are_30_minutes_apart_then_a_new_visit_starts() -> None:
    events = [ev(1, 0), ev(2, 29), ev(3, 29 + 31), ev(4, 61, ip_address="192.0.2.2")]
    keys = assign_visits(events)
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] not in keys[:3]  # another IP: another visitor's visit
    assert SESSION_GAP_MS == 30 * MINUTE


def test_given_a_network_userid_then_it_keys_the_inactivity_rule_across_ips() -> None:
    events = [ev(1, 0, network_userid="n1"), ev(2, 5, network_userid="n1", ip_address="198.51.100.9")]
    assert len(set(assign_visits(events))) == 1


def test_given_a_tracker_session_id_then_it_is_the_visit_whatever_the_gap() -> None:
    events = [ev(1, 0, domain_sessionid="s1"), ev(2, 300, domain_sessionid="s1"), ev(3, 1, domain_sessionid="s2")]
    keys = assign_visits(events)
    assert keys[0] == keys[1] != keys[2]


def test_given_a_day_when_rolled_up_then_bounces_entries_exits_and_bots_follow_the_definitions() -> None:
    events = [
        # visit A: two page views and a ping -> not a bounce, 10 minutes long, enters at /, exits at /a
        ev(1, 0, domain_sessionid="A", domain_userid="u1", source=("search", "Google", "", "", "", "", "")),
        ev(2, 5, "page_ping", domain_sessionid="A", domain_userid="u1"),
        ev(3, 10, domain_sessionid="A", domain_userid="u1", page_path="/a"),
        # visit B: one page view -> a bounce
        ev(4, 20, domain_sessionid="B", domain_userid="u2", page_path="/a"),
        # visit C: one page view and a click -> engaged, not a bounce
        ev(5, 30, domain_sessionid="C", domain_userid="u1", page_path="/b"),
        ev(6, 31, "unstruct", domain_sessionid="C", domain_userid="u1"),
        # a bot: left out of every figure
        ev(7, 40, domain_sessionid="D", domain_userid="bot", is_bot=True),
    ]
    tables = roll_up_day("2024-11-15", events).tables
    site = tables["site"][0]
    assert (site["pageviews"], site["visits"], site["visitors"], site["bounces"]) == (4, 3, 2, 1)
    assert (site["events"], site["bot_events"], site["visit_duration_ms"]) == (6, 1, 11 * MINUTE)
    pages = {row["page"]: (row["pageviews"], row["entries"], row["exits"]) for row in tables["pages"]}
    assert pages == {"/": (1, 1, 0), "/a": (2, 1, 2), "/b": (1, 1, 1)}
    google = [row for row in tables["sources"] if row["refr_source"] == "Google"]
    assert [(r["visits"], r["pageviews"], r["bounces"]) for r in google] == [(1, 2, 0)]
    assert tables["hourly"] == [{"date": "2024-11-15", "hour": 9, "pageviews": 4, "visits": 3, "visitors": 2}]
    assert round(hll_estimate(site["visitors_hll"])) == 2


def test_hyperloglog_estimates_and_merges_within_the_stated_bound() -> None:
    first = [f"v{i}" for i in range(30_000)]
    second = [f"v{i}" for i in range(20_000, 60_000)]  # 10,000 in common
    a, b = hll_registers(first), hll_registers(second)
    assert len(a) == HLL_REGISTERS
    for registers, exact in ((a, 30_000), (hll_merge([a, b]), 60_000), (hll_registers(first[:100]), 100)):
        assert abs(hll_estimate(registers) - exact) <= HLL_ERROR_BOUND * exact
    assert hll_merge([a, b]) == hll_registers(first + second)  # merging is exact: the union's sketch
    assert hll_estimate(bytes(HLL_REGISTERS)) == 0


def obj(key: str, size: int = 10, etag: str = "x") -> StoredObject:
    return StoredObject(key, size, etag)


def test_plan_rolls_up_only_days_whose_inputs_changed() -> None:
    day1 = [obj("events/event_date=2024-11-01/event_hour=00/part-00000.parquet")]
    day2 = [obj("events/event_date=2024-11-02/event_hour=05/part-00000.parquet")]
    first = plan_rollups(day1 + day2)
    assert first.selected == ("2024-11-01", "2024-11-02")
    written = [obj(d.key(t)) for d in first.days for t in ("site", "hourly", "pages", "sources", "technology")]
    assert plan_rollups(day1 + day2 + written).selected == ()
    late = obj("events/event_date=2024-11-02/event_hour=06/sink-late.parquet")
    again = plan_rollups(day1 + day2 + [late] + written)
    assert again.selected == ("2024-11-02",)
    changed = next(d for d in again.days if d.date == "2024-11-02")
    assert len(changed.stale) == 5 and all("2024-11-02" in key for key in changed.stale)
    assert plan_rollups(day1 + day2, since=None, until=None).selected == first.selected
    from datetime import date

    assert plan_rollups(day1 + day2, since=date(2024, 11, 2)).selected == ("2024-11-02",)


def test_digest_and_manifest_are_deterministic() -> None:
    inputs = (obj("events/event_date=2024-11-01/event_hour=00/a.parquet"),)
    assert day_digest("2024-11-01", inputs) == day_digest("2024-11-01", inputs)
    assert day_digest("2024-11-01", inputs) != day_digest("2024-11-01", (obj(inputs[0].key, 11),))
    plan = plan_rollups(list(inputs))
    assert manifest(plan) == manifest(plan_rollups(list(inputs)))
    assert isinstance(plan.days[0], DayPlan) and plan.days[0].key("site").endswith(
        f"part-{plan.days[0].digest}.parquet"
    )


def test_the_manifest_names_only_days_whose_files_exist_after_the_run() -> None:
    import json
    from datetime import date

    day1 = obj("events/event_date=2024-11-01/event_hour=00/part-00000.parquet")
    day2 = obj("events/event_date=2024-11-02/event_hour=00/part-00000.parquet")
    only_second = plan_rollups([day1, day2], since=date(2024, 11, 2))
    assert list(json.loads(manifest(only_second))["days"]) == ["2024-11-02"]
    written = [
        obj(d.key(t)) for d in only_second.days[1:] for t in ("site", "hourly", "pages", "sources", "technology")
    ]
    later = plan_rollups([day1, day2, *written], until=date(2024, 11, 1))
    assert later.selected == ("2024-11-01",)
    assert list(json.loads(manifest(later))["days"]) == ["2024-11-01", "2024-11-02"]
