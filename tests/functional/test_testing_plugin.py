"""The testing kit's runners on moto, and its pytest plugin in a fresh project.

GIVEN a project outside this repository whose tests only name the plugin's fixtures
WHEN pytest runs there (the plugin found through the installed package's ``pytest11`` entry point)
THEN every fixture works: the config and its per-test overrides, the emulated account, the sample
     logs, and the chain answering Snowplow Micro's questions (good, bad, counts, reset, export);
     so does the README's example.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pipeline.testing import (
    assert_conserved,
    assert_event_matches,
    assert_no_bad_rows,
    cloudfront_log,
    run_chain,
    run_extract,
    run_transform,
    tracker_hit,
)

ROOT = Path(__file__).resolve().parents[2]
EID = "0b7a3a1e-52a4-4f55-9b3f-9f5d2c1a8e01"
KIT_URL = "https://kit.example.com/a?x=1&y=%2F"

INNER_CONFTEST = '''
import pytest

@pytest.fixture
def clickstream_config_overrides():
    """A project-wide override by fixture (the marker's alternative)."""
    return {"resources.output_bucket": "inner-project-output"}
'''

INNER_TESTS = """
import json

import pytest

from pipeline.testing import (
    assert_conserved, assert_no_bad_rows, contexts, entity, self_describing_event, tracker_hit,
)

LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
EID = "5f0e5a2c-8d3b-4c61-a1e7-3c9b2d4f6a10"


def test_the_overrides_fixture_of_the_project_applies(clickstream_config):
    assert clickstream_config.resources.output_bucket == "inner-project-output"


def test_the_projects_config_file_applies_under_the_overrides(clickstream_config):
    assert clickstream_config.resources.ledger_table == "from-the-project-file"
    assert clickstream_config.resources.output_bucket == "inner-project-output"  # the fixture wins


@pytest.mark.clickstream_config({"resources.log_bucket": "inner-project-logs"})
def test_a_marker_overrides_the_config_and_the_account_holds_its_resources(clickstream_config, clickstream_aws):
    resources = clickstream_config.resources
    assert resources.log_bucket == "inner-project-logs"
    buckets = {b["Name"] for b in clickstream_aws.s3.list_buckets()["Buckets"]}
    assert {"inner-project-logs", "inner-project-output"} <= buckets
    assert set(clickstream_aws.kinesis.list_streams()["StreamNames"]) == {resources.raw_stream, resources.events_stream}
    assert resources.ledger_table in clickstream_aws.dynamodb.list_tables()["TableNames"]


def test_the_chain_answers_micro_questions(chain, tmp_path):
    page_view = tracker_hit(e="pv", url="https://inner.example/p?q=1", eid=EID, aid="inner", p="web", tv="js-3")
    click = tracker_hit(
        e="ue", aid="inner", p="web", tv="js-3",
        **self_describing_event(LINK_CLICK, {"targetUrl": "https://x.example/"}),
        **contexts(entity(WEB_PAGE, {"id": EID})),
    )
    run = chain.send([page_view, click, "not a log line"])
    assert_conserved(run.summary)
    assert run.summary.lines_read == 5 and run.summary.skipped == 2  # the two header lines

    counts = chain.counts()
    assert (counts.total, counts.good, counts.bad) == (3, 2, 1)
    assert counts.by_event_type == {"page_view": 1, "unstruct": 1}
    assert [e["page_urlquery"] for e in chain.good(event_type="pv")] == ["q=1"]
    assert [e["event"] for e in chain.good(schema=LINK_CLICK)] == ["unstruct"]
    assert [e["event"] for e in chain.good(contexts=[WEB_PAGE])] == ["unstruct"]
    assert chain.good(event_type="page_ping") == []
    assert [row.kind.value for row in chain.bad()] == ["field_count"]

    export = chain.export(tmp_path / "export")
    good = [json.loads(line) for line in export.good.read_text().splitlines()]
    assert sorted(e["event"] for e in good) == ["page_view", "unstruct"]
    bad = [json.loads(line) for line in export.bad.read_text().splitlines()]
    assert [row["data"]["failure"]["kind"] for row in bad] == ["field_count"]
    assert json.loads(export.counts.read_text())["good"] == 2

    chain.reset()
    assert chain.counts().total == 0 and chain.bad() == []
    again = chain.send([tracker_hit(e="pv", url="https://inner.example/after-reset", aid="inner", p="web", tv="js-3")])
    assert_no_bad_rows(again)
    assert [e["page_urlpath"] for e in chain.good()] == ["/after-reset"]


def test_the_sample_logs_go_through_the_chain(chain, clickstream_sample_logs):
    files = sorted(clickstream_sample_logs.iterdir())
    assert len(files) == 2 and all(f.name.endswith(".gz") for f in files)
    run = chain.send(files[0], name=files[0].name)
    assert_conserved(run.summary)
    assert run.summary.lines_read == 42 and run.events
    assert chain.counts().good == len(run.events)
"""


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("clickstream_etl") == "pipeline.testing.plugin"


@pytest.mark.slow
def test_the_plugins_fixtures_work_in_a_fresh_project(tmp_path: Path) -> None:
    project = tmp_path / "inner_project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = "--strict-markers"\nclickstream_config_file = "pipeline.toml"\n'
    )
    (project / "pipeline.toml").write_text(
        '[resources]\nledger_table = "from-the-project-file"\noutput_bucket = "file-output"\n'
    )
    (project / "tests" / "conftest.py").write_text(textwrap.dedent(INNER_CONFTEST))
    (project / "tests" / "test_with_the_kit.py").write_text(textwrap.dedent(INNER_TESTS))
    readme = (ROOT / "README.md").read_text("utf-8")
    example = readme.split("### Testing kit", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (project / "tests" / "test_readme_example.py").write_text(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CLICKSTREAM_"))}

    # No "-p": pytest must find the plugin through the installed distribution's entry point.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout, result.stdout[-2000:]


def test_run_extract_then_run_transform_is_the_chain_in_two_steps() -> None:
    log = cloudfront_log([tracker_hit(e="pv", url=KIT_URL, eid=EID, aid="kit", p="web", tv="js-3"), "junk"])
    extracted = run_extract(log)
    assert extracted.outcome == "complete"
    assert_conserved(extracted.summary)
    assert (extracted.summary.lines_read, extracted.summary.good, extracted.summary.skipped) == (4, 2, 2)

    transformed = run_transform(list(extracted.batches))
    assert_conserved(transformed.summary)
    assert [row.kind.value for row in transformed.bad] == ["field_count"]
    assert_event_matches(transformed.event, {"event_id": EID, "page_url": KIT_URL, "page_urlquery": "x=1&y=%2F"})


def test_run_chain_gives_the_acceptance_lines_event() -> None:
    run = run_chain(cloudfront_log([tracker_hit(e="pv", url=KIT_URL, eid=EID, aid="kit", p="web", tv="js-3")]))
    assert_no_bad_rows(run)
    assert_conserved(run.summary)
    assert_event_matches(run.event, {"event_id": EID, "page_url": KIT_URL, "page_urlquery": "x=1&y=%2F"})
