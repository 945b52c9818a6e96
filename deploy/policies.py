"""The golden IAM allow-lists: every role of template.yaml as ``action -> resource patterns``.

``deploy/iam/<LogicalId>.json`` holds one file per role, named after the resource that runs with
it (a function's logical id, or the Firehose delivery stream's).  A resource pattern is the
statement's resource with intrinsics written out: ``!Ref X`` is ``${X}``, ``!GetAtt A.Arn`` is
``${A.Arn}``, ``!Sub`` is its string (its variables substituted), and every branch of an
``!If`` counts (a permission granted in any configuration is in the list).  tests/unit/
test_template.py fails when a role and its file differ, so a new permission shows up in review::

    python -m deploy.policies --write     # rewrite deploy/iam/*.json from the template
    python -m deploy.policies --check     # exit 1 when they differ
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from deploy.cfn import ROOT, load_template

IAM_DIR: Final = ROOT / "deploy" / "iam"
NO_VALUE: Final = {"Ref": "AWS::NoValue"}


def alternatives(value: Any) -> list[Any]:
    """Every value ``value`` can take, one per branch of its ``Fn::If`` (``AWS::NoValue`` dropped)."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, yes, no = value["Fn::If"]
        return [v for branch in (yes, no) for v in alternatives(branch)]
    if value == NO_VALUE:
        return []
    return [value]


def patterns(value: Any) -> list[str]:
    """The resource patterns of a policy ``Resource`` value (a string, an intrinsic, a list of them)."""
    out: list[str] = []
    for option in alternatives(value):
        if isinstance(option, list):
            out.extend(p for item in option for p in patterns(item))
        elif isinstance(option, str):
            out.append(option)
        elif "Ref" in option:
            out.append(f"${{{option['Ref']}}}")
        elif "Fn::GetAtt" in option:
            out.append("${" + ".".join(option["Fn::GetAtt"]) + "}")
        elif "Fn::Sub" in option:
            out.extend(_sub(option["Fn::Sub"]))
        else:
            raise ValueError(f"unsupported resource expression {option!r}")
    return out


def _sub(argument: Any) -> list[str]:
    if isinstance(argument, str):
        return [argument]
    text, variables = argument
    results = [text]
    for name, value in variables.items():
        results = [r.replace(f"${{{name}}}", p) for r in results for p in patterns(value)]
    return results


def statements(role: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every statement of a role's inline policies, in every configuration (each ``Fn::If`` branch)."""
    for policy in role.get("Properties", {}).get("Policies", []):
        for entry in policy["PolicyDocument"]["Statement"]:
            yield from alternatives(entry)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allow_list(role: Mapping[str, Any]) -> dict[str, list[str]]:
    """``action -> sorted resource patterns`` of a role's Allow statements."""
    granted: dict[str, set[str]] = {}
    for statement in statements(role):
        if statement.get("Effect") != "Allow":
            raise ValueError(f"only Allow statements are expected in roles, got {statement!r}")
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(patterns(statement["Resource"]))
    return {action: sorted(resources) for action, resources in sorted(granted.items())}


def role_users(template: Mapping[str, Any]) -> dict[str, list[str]]:
    """Role logical id -> the resources that run with it (``Role`` of a function, ``RoleARN`` of Firehose)."""
    users: dict[str, list[str]] = {}
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        refs = [properties.get("Role")]
        if resource["Type"] == "AWS::KinesisFirehose::DeliveryStream":
            refs.append(properties.get("KinesisStreamSourceConfiguration", {}).get("RoleARN"))
        for ref in refs:
            if isinstance(ref, dict) and "Fn::GetAtt" in ref:
                role = ref["Fn::GetAtt"][0]
                if name not in users.setdefault(role, []):
                    users[role].append(name)
    return users


def golden_name(template: Mapping[str, Any], role: str) -> str:
    """The golden file of ``role``: the logical id of the one resource that runs with it."""
    users = role_users(template).get(role, [])
    if len(users) != 1:
        raise ValueError(f"role {role} must serve exactly one resource, serves {users}")
    return users[0]


def roles(template: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}


def rendered(template: Mapping[str, Any]) -> dict[str, str]:
    """Golden file name -> its JSON text, for every role of ``template``."""
    return {
        f"{golden_name(template, name)}.json": json.dumps(allow_list(role), indent=2) + "\n"
        for name, role in roles(template).items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.policies", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite deploy/iam/*.json from template.yaml")
    action.add_argument("--check", action="store_true", help="exit 1 when deploy/iam/*.json differ from template.yaml")
    args = parser.parse_args(argv)
    wanted = rendered(load_template())
    present = {path.name: path.read_text("utf-8") for path in IAM_DIR.glob("*.json")}
    stale = sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))
    if args.check:
        for name in stale:
            print(f"deploy/iam/{name}: differs from template.yaml (python -m deploy.policies --write)")
        return 1 if stale else 0
    IAM_DIR.mkdir(parents=True, exist_ok=True)
    for name in stale:
        path: Path = IAM_DIR / name
        if name in wanted:
            path.write_text(wanted[name], "utf-8")
        else:
            path.unlink()
        print(f"deploy/iam/{name}: {'written' if name in wanted else 'removed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
