"""``clickstream-etl dashboard --publish s3://SITE_BUCKET``: the hosted dashboard's site files (issue 16), on moto.

The stack's distribution serves the site from DashboardSiteBucket and the rollups straight from the
output bucket, so a publish puts exactly the site's three files, each with its content type and a
revalidating Cache-Control, and never a rollup or an event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from pipeline.app.cli import main
from pipeline.app.dashboard import SITE_CACHE_CONTROL, SITE_FILES, publish_plan, publish_site, site_folder
from pipeline.aws.clients import make_client
from pipeline.config import load_config

SITE_BUCKET = "clickstream-dashboard-publish-test"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = make_client("s3", load_config(environ={}).aws)
        client.create_bucket(Bucket=SITE_BUCKET)
        yield client


def test_given_the_site_bucket_when_published_then_it_holds_the_site_files_only(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the command publishes the site to the bucket
    assert main(["dashboard", "--publish", f"s3://{SITE_BUCKET}"]) == 0
    # THEN the bucket holds the package's site files, typed and revalidated, and nothing else
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=SITE_BUCKET)["Contents"])
    assert keys == sorted(SITE_FILES)
    for name, content_type in SITE_FILES.items():
        got = s3.get_object(Bucket=SITE_BUCKET, Key=name)
        assert got["ContentType"] == content_type and got["CacheControl"] == SITE_CACHE_CONTROL
        assert got["Body"].read() == (site_folder() / name).read_bytes()
    assert "3 site files published" in capsys.readouterr().out


def test_a_prefix_is_kept_and_the_page_is_written_after_its_script(s3: Any) -> None:
    written = publish_site(s3, SITE_BUCKET, publish_plan("/preview/"))
    assert written[-1] == "preview/index.html" and set(written) == {f"preview/{name}" for name in SITE_FILES}
    assert all(o["Key"].startswith("preview/") for o in s3.list_objects_v2(Bucket=SITE_BUCKET)["Contents"])


def test_a_bucket_that_does_not_exist_is_a_terminal_error_that_names_it(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", "--publish", "s3://no-such-dashboard-bucket"]) == 1
    err = capsys.readouterr().err
    assert "no-such-dashboard-bucket" in err and "(retry)" not in err


def test_the_command_still_needs_dest_to_serve_or_build(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard"]) == 2
    assert "DEST" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # one action at a time (argparse's usage error)
        main(["dashboard", "--publish", f"s3://{SITE_BUCKET}", "--build", "out"])
    assert refused.value.code == 2 and "not allowed with" in capsys.readouterr().err
