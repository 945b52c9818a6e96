"""The hosted dashboard's basic auth (issue 16): the CloudFront Function of template.yaml, run in Node.

CloudFront Functions' runtime 2.0 has the same ``crypto.createHash`` and ``Buffer`` as Node, so the
function's code, rendered with the template's parameters, is run here on viewer-request events;
its hash must be the one ``clickstream-etl dashboard --password-hash`` prints.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from deploy.cfn import Evaluator, load_template
from pipeline.app.cli import main
from pipeline.app.dashboard import password_hash
from pipeline.errors import InputError

NODE = shutil.which("node")
USER, PASSWORD = "team", "correct horse: battery staple"
HARNESS = """
var events = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(events.map(function (e) { return handler(e); })));
"""


def function_code(user: str, hash_hex: str) -> str:
    template = load_template()
    ev = Evaluator(template, {"Dashboard": "enabled", "DashboardUser": user, "DashboardPasswordHash": hash_hex})
    code: str = ev.resolve(template["Resources"]["DashboardAuthFunction"]["Properties"]["FunctionCode"])
    return code


def viewer_request(authorization: str | None) -> dict[str, Any]:
    headers = {"host": {"value": "d111111abcdef8.cloudfront.net"}}
    if authorization is not None:
        headers["authorization"] = {"value": authorization}
    return {"version": "1.0", "request": {"method": "GET", "uri": "/rollups/manifest.json", "headers": headers}}


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.mark.skipif(NODE is None, reason="the CloudFront Function runs in Node (CI installs it for the front ends)")
def test_only_the_configured_user_and_password_pass_the_viewer_request() -> None:
    # GIVEN the function rendered with the hash of USER:PASSWORD
    code = function_code(USER, password_hash(USER, PASSWORD))
    cases = {
        "right": basic(f"{USER}:{PASSWORD}"),
        "scheme in lowercase": "basic " + basic(f"{USER}:{PASSWORD}")[6:],
        "wrong password": basic(f"{USER}:{PASSWORD}x"),
        "other user, same password": basic(f"admin:{PASSWORD}"),
        "no colon": basic(USER + PASSWORD),
        "empty user": basic(f":{PASSWORD}"),
        "bearer": "Bearer " + password_hash(USER, PASSWORD),
        "not base64": "Basic !!!",
        "none": None,
    }
    # WHEN each request passes through it
    result = subprocess.run(
        [str(NODE), "-e", code + HARNESS],
        input=json.dumps([viewer_request(a) for a in cases.values()]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answers = dict(zip(cases, json.loads(result.stdout), strict=True))
    # THEN the right credentials get the request through unchanged, everything else a 401 challenge
    passed = {name for name, answer in answers.items() if "statusCode" not in answer}
    assert passed == {"right", "scheme in lowercase"}
    assert answers["right"] == viewer_request(cases["right"])["request"]
    for name in set(cases) - passed:
        answer = answers[name]
        assert answer["statusCode"] == 401, name
        assert answer["headers"]["www-authenticate"]["value"].startswith('Basic realm="dashboard"'), name
        assert answer["headers"]["cache-control"]["value"] == "no-store", name


def test_the_password_hash_is_the_sha256_of_user_and_password_and_matches_the_template_pattern() -> None:
    parameters = load_template()["Parameters"]
    digest = password_hash("team", "pw")
    assert digest == hashlib.sha256(b"team:pw").hexdigest()
    assert re.fullmatch(parameters["DashboardPasswordHash"]["AllowedPattern"], digest)
    # the user names the template refuses (it holds one in a JavaScript string) are refused here too
    for bad_user in ("a:b", "it's", 'say "hi"', "x" * 65):
        assert not re.fullmatch(parameters["DashboardUser"]["AllowedPattern"], bad_user)
        with pytest.raises(InputError):
            password_hash(bad_user, "pw")
    with pytest.raises(InputError):
        password_hash("", "pw")
    with pytest.raises(InputError):
        password_hash("team", "")


def test_the_password_hash_command_reads_the_password_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["dashboard", "--password-hash", USER]) == 0
    assert capsys.readouterr().out == password_hash(USER, PASSWORD) + "\n"
    assert main(["dashboard", "--password-hash", "a:b"]) == 2
