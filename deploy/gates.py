"""What .ci/run's security gates conclude from the tools' JSON reports (standard library only).

``python -m deploy.gates bandit REPORT...``
    Passes when every finding of ``bandit -ll -f json`` is accepted in deploy/bandit-accepted.json
    (file, test id and the flagged line's text, each with the reason it is not a vulnerability).
    A flagged line that changes needs a fresh look, so it must be accepted again.
``python -m deploy.gates pip-audit REPORT``
    Exit 1 on any known vulnerability.  Exit 3, loudly, when pip-audit could not audit some
    dependency (no vulnerability service reachable, or a package it cannot find): pip-audit
    itself reports "No known vulnerabilities found" and exits 0 in that case.
``python -m deploy.gates checkov-variants DIR``
    Writes template.yaml once per configuration into DIR, as JSON with the parameter defaults of
    that configuration: checkov evaluates Conditions with the defaults, so the resources of the
    direct mode and of Redshift are only checked in a variant that creates them.
``python -m deploy.gates requirements EXTRA``
    Prints the requirements of a pyproject extra, one a line (to install the tools without the project).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tomllib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

# Not deploy.cfn's ROOT: that module needs PyYAML, and ``requirements`` runs before anything is
# installed (CI installs the gates' tools with it while the project installs).
ROOT: Final = Path(__file__).resolve().parents[1]

BANDIT_ACCEPTED: Final = ROOT / "deploy" / "bandit-accepted.json"

UNAUDITED_EXIT: Final = 3

VARIANTS: Final[Mapping[str, Mapping[str, str]]] = {
    "streaming-redshift": {
        "RedshiftMode": "serverless",
        "RedshiftTarget": "analytics",
        "RedshiftWorkgroupId": "0123abcd-0123-4567-89ab-0123456789ab",
        "RedshiftJdbcUrl": "jdbc:redshift://analytics.123456789012.us-east-1.redshift-serverless.amazonaws.com:5439/dev",
        "RedshiftSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:redshift-AbCdEf",
    },
    "direct": {"PipelineMode": "direct"},
    # The collector is off by default (no public endpoint on an upgrade): check its resources too.
    "streaming-collector": {"Collector": "function-url"},
    "streaming-collector-api": {"Collector": "http-api"},
    # The hosted dashboard is off by default too (no new distribution on an upgrade).
    "streaming-dashboard": {"Dashboard": "enabled", "DashboardUser": "team", "DashboardPasswordHash": "0" * 64},
}
"""Parameter defaults of each checkov variant: with template.yaml's own defaults (streaming, no
Redshift, a new raw bucket) they create every resource of the template."""


def _line(path: str, number: int) -> str:
    lines = (ROOT / path).read_text("utf-8").splitlines()
    return lines[number - 1].strip() if 0 < number <= len(lines) else ""


def bandit(reports: list[Path]) -> int:
    """0 when every finding of the bandit reports is accepted, else 1 (each new one printed with what to paste)."""
    results: list[dict[str, Any]] = []
    for report in reports:
        document = json.loads(report.read_text("utf-8"))
        if document.get("errors"):
            print(f"bandit could not scan: {document['errors']}")
            return 1
        results.extend(document["results"])
    accepted = json.loads(BANDIT_ACCEPTED.read_text("utf-8"))
    budget = Counter((a["file"], a["test_id"], a["code"]) for a in accepted)
    new: list[dict[str, str]] = []
    for finding in results:
        path = Path(finding["filename"]).as_posix().removeprefix("./")
        key = (path, finding["test_id"], _line(path, finding["line_number"]))
        if budget[key] > 0:
            budget[key] -= 1
            continue
        new.append(
            {
                "file": path,
                "test_id": finding["test_id"],
                "code": key[2],
                "reason": f"{finding['issue_severity']}: {finding['issue_text']} (line {finding['line_number']})",
            }
        )
    unused = [{"file": f, "test_id": t, "code": c} for (f, t, c), left in budget.items() for _ in range(left)]
    print(f"bandit: {len(results)} finding(s) at medium severity or above, {len(results) - len(new)} accepted")
    for entry in unused:
        print(f"  no longer found (remove from {BANDIT_ACCEPTED.name}): {json.dumps(entry)}")
    if new:
        print(f"  NOT ACCEPTED ({len(new)}): fix them, or add each to {BANDIT_ACCEPTED.name} with its reason:")
        for entry in new:
            print(f"    {json.dumps(entry)}")
        return 1
    return 0


def pip_audit(report: Path) -> int:
    """0 when every dependency was audited and none is vulnerable; 1 when one is; 3 when some could not be audited."""
    text = report.read_text("utf-8").strip() if report.exists() else ""
    if not text:
        print(f"pip-audit: NOT AUDITED: it wrote no report ({report}); see its log")
        return UNAUDITED_EXIT
    dependencies = json.loads(text)["dependencies"]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audited = len(dependencies) - len(skipped)
    print(f"pip-audit: {audited} of {len(dependencies)} installed distributions audited")
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"  VULNERABLE {dependency['name']} {dependency.get('version', '')}: {vuln['id']} (fixed in {fixes})")
    if vulnerable:
        return 1
    if skipped:
        reasons = Counter(d["skip_reason"].split(":", 1)[0] for d in skipped)
        print("  " + "!" * 76)
        print(f"  NOT AUDITED: {len(skipped)} distribution(s) could not be checked, so this is no pass:")
        for reason, count in reasons.most_common():
            print(f"    {count} x {reason}")
        print("  pip-audit needs https://pypi.org/pypi/<name>/<version>/json (or OSV with -s osv); run it")
        print("  where that is reachable.")
        print("  " + "!" * 76)
        return UNAUDITED_EXIT
    return 0


def checkov_variants(directory: Path) -> int:
    from deploy.cfn import load_template

    template = load_template()
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in VARIANTS.items():
        variant: dict[str, Any] = copy.deepcopy(template)
        for parameter, value in values.items():
            variant["Parameters"][parameter]["Default"] = value
        (directory / f"template-{name}.json").write_text(json.dumps(variant, indent=1), "utf-8")
    print(f"checkov variants: {', '.join(VARIANTS)} in {directory}")
    return 0


def requirements(extra: str) -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    for requirement in project["optional-dependencies"][extra]:
        print(requirement)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.gates", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bandit").add_argument("reports", type=Path, nargs="+")
    commands.add_parser("pip-audit").add_argument("report", type=Path)
    commands.add_parser("checkov-variants").add_argument("directory", type=Path)
    commands.add_parser("requirements").add_argument("extra")
    args = parser.parse_args(argv)
    if args.command == "bandit":
        return bandit(args.reports)
    if args.command == "pip-audit":
        return pip_audit(args.report)
    if args.command == "checkov-variants":
        return checkov_variants(args.directory)
    return requirements(args.extra)


if __name__ == "__main__":
    sys.exit(main())
