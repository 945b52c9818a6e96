"""Reading template.yaml the way CloudFormation does, for the tests and the generators.

* :func:`load_template`: the YAML with its short-form intrinsics (``!Ref``, ``!Sub``...) expanded.
* :func:`with_s3_code`: the template with every local ``CodeUri``/``ContentUri`` replaced by an
  S3 location (what ``sam deploy`` does after uploading the folders).
* :func:`translate`: the SAM transform (aws-sam-translator, a test dependency), offline.
* :class:`Evaluator`: parameter values, conditions and the intrinsics of names and ARNs resolved
  for one configuration, so tests can compare the template with the code's own values.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[1]
TEMPLATE: Final = ROOT / "template.yaml"
ACCOUNT: Final = "123456789012"
REGION: Final = "us-east-1"


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """YAML with CloudFormation's short-form intrinsics as their long form."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as CloudFormation's JSON model (short-form tags expanded)."""
    document = yaml.load(path.read_text("utf-8"), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a template")
    return document


def with_s3_code(template: Mapping[str, Any], bucket: str) -> dict[str, Any]:
    """A copy whose local code folders are S3 objects ``lambda-artifacts/<folder>.zip`` in ``bucket``."""
    out = copy.deepcopy(dict(template))
    for resource in out["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = {"Bucket": bucket, "Key": s3_code_key(properties[key])}
    return out


def s3_code_key(folder: str) -> str:
    """The S3 key :func:`with_s3_code` gives a code folder (``lambda-artifacts/load/`` -> ``...load.zip``)."""
    return folder.rstrip("/") + ".zip"


def translate(template: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The SAM transform of ``template`` (code on S3, see :func:`with_s3_code`), without AWS access."""
    import boto3
    from samtranslator.parser.parser import Parser  # type: ignore[import-untyped]
    from samtranslator.translator.translator import Translator  # type: ignore[import-untyped]
    from samtranslator.utils.py27hash_fix import (  # type: ignore[import-untyped]
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    fragment = copy.deepcopy(dict(template))
    values = dict(parameters or {})
    to_py27_compatible_template(fragment, values)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    translated = translator.translate(fragment, parameter_values=values, get_managed_policy_map=dict)
    result: dict[str, Any] = undo_mark_unicode_str_in_template(translated)
    return result


_SUB_VARIABLE: Final = re.compile(r"\$\{([^}!][^}]*)\}")


class Evaluator:
    """One configuration of a template: parameter values, conditions, and resolved intrinsics.

    ``attributes(logical_id, attribute)`` supplies ``Fn::GetAtt`` values; by default they resolve
    to ``<LogicalId.Attribute>`` placeholders (enough to compare names and wiring).
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        *,
        attributes: Callable[[str, str], Any] | None = None,
        refs: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.parameters: dict[str, Any] = {
            name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": "clickstream-etl",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._attributes = attributes or (lambda logical, attribute: f"<{logical}.{attribute}>")
        self._refs = dict(refs or {})
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self._truth(self.template["Conditions"][name]))
        return self._conditions[name]

    def _truth(self, expression: Any) -> bool:
        ((function, argument),) = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.resolve(a) for a in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(a) for a in argument)
        if function == "Fn::Or":
            return any(self._truth(a) for a in argument)
        raise ValueError(f"unsupported condition function {function}")

    def exists(self, logical_id: str) -> bool:
        """Whether the resource is created in this configuration."""
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def resources(self, resource_type: str | None = None) -> dict[str, Any]:
        """The resources created in this configuration (optionally of one type)."""
        return {
            name: r
            for name, r in self.template["Resources"].items()
            if self.exists(name) and (resource_type is None or r["Type"] == resource_type)
        }

    # ------------------------------------------------------------------ values
    def resolve(self, value: Any) -> Any:  # noqa: PLR0911 - one branch per intrinsic
        """``value`` with every intrinsic evaluated (``AWS::NoValue`` entries removed)."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::If":
                condition, yes, no = argument
                return self.resolve(yes if self.condition(condition) else no)
            if function == "Fn::GetAtt":
                logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self._attributes(logical, attribute)
            if function == "Fn::Join":
                separator, parts = argument
                return separator.join(str(i) for i in self.resolve(parts))
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self._refs:
            return self._refs[name]
        if name in self.template["Resources"]:
            return f"<{name}>"
        raise KeyError(f"unknown Ref {name}")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {k: self.resolve(v) for k, v in variables.items()}

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self._attributes(logical, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(variable, text).replace("${!", "${")


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE: Final = _NoValue()
