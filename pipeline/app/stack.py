"""The deployment, as values: the template's parameters checked, its conditions decided, its
resources counted, and the ``sam deploy`` command line -- before anything runs.

``clickstream-etl deploy`` (:mod:`pipeline.app.commands.deploy`) prints what these functions
return and then runs the command.  The template is read with a YAML loader that knows
CloudFormation's short tags (``!Ref``, ``!Sub``, ``!GetAtt a.b``, ``!If`` ...), turned into
their long forms (``{"Ref": ...}``, ``{"Fn::Sub": ...}``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pipeline.errors import ConfigError, InputError

DEFAULT_TEMPLATE: Final = "template.yaml"
DEFAULT_STACK: Final = "clickstream-etl"
CAPABILITIES: Final = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND")
"""One role per function (IAM), and the SAM transform (AUTO_EXPAND)."""
INSTALL_SAM: Final = "pip install 'clickstream-etl[deploy]'"
MODE_PARAMETER: Final = "PipelineMode"
REDSHIFT_PARAMETER: Final = "RedshiftMode"

_SHORT_TAGS: Final = (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Contains",
    "EachMemberEquals",
    "EachMemberIn",
    "RefAll",
    "ValueOf",
    "ValueOfAll",
    "Length",
    "ToJsonString",
)


def _loader() -> Any:
    try:
        import yaml
    except ImportError:
        raise InputError(f"reading template.yaml needs PyYAML: {INSTALL_SAM}") from None

    class CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]
        """PyYAML's safe loader plus CloudFormation's short-form intrinsic functions."""

    def construct(loader: Any, tag_suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix == "Ref":
            return {"Ref": value}
        if tag_suffix == "Condition":
            return {"Condition": value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag_suffix}": value}

    CloudFormationLoader.add_multi_constructor("!", construct)
    return CloudFormationLoader


def parse_template(text: str) -> dict[str, Any]:
    """A CloudFormation/SAM template (YAML or JSON) as plain values; ConfigError when it is not one."""
    import yaml

    try:
        document = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"the template is not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ConfigError("the template has no Resources")
    return document


def load_template(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        hint = (
            "; deploy from a checkout of the project, which holds template.yaml and where "
            "`clickstream-etl package` builds lambda-artifacts/ (git clone, then pip install -e '.[deploy]'), "
            "or pass --template"
            if isinstance(exc, FileNotFoundError)
            else ""
        )
        raise InputError(f"cannot read the template {path}: {exc.strerror or exc}{hint}") from exc
    return parse_template(text)


@dataclass(frozen=True)
class Parameter:
    """One entry of the template's Parameters."""

    name: str
    type: str
    default: str | None
    allowed_values: tuple[str, ...]
    allowed_pattern: str | None
    min_length: int | None
    max_length: int | None
    min_value: float | None
    max_value: float | None
    description: str
    constraint: str

    @classmethod
    def of(cls, name: str, spec: Mapping[str, Any]) -> Parameter:
        def number(key: str) -> float | None:
            return float(spec[key]) if key in spec else None

        default = spec.get("Default")
        return cls(
            name=name,
            type=str(spec.get("Type", "String")),
            default=None if default is None else _text(default),
            allowed_values=tuple(_text(v) for v in spec.get("AllowedValues", ())),
            allowed_pattern=spec.get("AllowedPattern"),
            min_length=int(spec["MinLength"]) if "MinLength" in spec else None,
            max_length=int(spec["MaxLength"]) if "MaxLength" in spec else None,
            min_value=number("MinValue"),
            max_value=number("MaxValue"),
            description=str(spec.get("Description", "")),
            constraint=str(spec.get("ConstraintDescription", "")),
        )

    def problems(self, value: str) -> list[str]:
        """What is wrong with ``value`` for this parameter (CloudFormation's checks), empty when nothing."""
        found = []
        values = (
            [v.strip() for v in value.split(",")] if self.type.startswith(("List<", "CommaDelimitedList")) else [value]
        )
        for item in values:
            if self.allowed_values and item not in self.allowed_values:
                found.append(f"{item!r} is not one of {', '.join(self.allowed_values)}")
            # CloudFormation matches AllowedPattern against the whole value.
            if self.allowed_pattern is not None and not re.fullmatch(self.allowed_pattern, item):
                found.append(f"{item!r} does not match {self.allowed_pattern}")
            if self.type in {"Number", "List<Number>"}:
                try:
                    number = float(item)
                except ValueError:
                    found.append(f"{item!r} is not a number")
                    continue
                if self.min_value is not None and number < self.min_value:
                    found.append(f"{item} is below {self.min_value:g}")
                if self.max_value is not None and number > self.max_value:
                    found.append(f"{item} is above {self.max_value:g}")
        if self.min_length is not None and len(value) < self.min_length:
            found.append(f"shorter than {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            found.append(f"longer than {self.max_length} characters")
        if found and self.constraint:
            found.append(self.constraint)
        return found


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def template_parameters(template: Mapping[str, Any]) -> dict[str, Parameter]:
    return {name: Parameter.of(name, spec or {}) for name, spec in (template.get("Parameters") or {}).items()}


def resolve_parameters(
    template: Mapping[str, Any], given: Sequence[tuple[str, str]], *, guided: bool = False
) -> dict[str, str]:
    """Every parameter's value (given, else its default), checked against the template.

    Raises InputError listing every problem at once: an unknown name, a value outside
    AllowedValues, AllowedPattern, the lengths or the bounds, and (unless ``guided``, where
    sam asks for them) a parameter with no default that was not given.
    """
    parameters = template_parameters(template)
    values = {name: p.default for name, p in parameters.items() if p.default is not None}
    problems = []
    for name, value in given:
        if name not in parameters:
            close = ", ".join(sorted(parameters)) or "none"
            problems.append(f"{name}: the template has no such parameter (it has: {close})")
            continue
        values[name] = value
    for name, parameter in parameters.items():
        if name not in values:
            if not guided:
                hint = f" ({parameter.description})" if parameter.description else ""
                problems.append(f"{name}: required, give --parameter {name}=VALUE{hint}")
            continue
        problems.extend(f"{name}: {problem}" for problem in parameter.problems(values[name]))
    if problems:
        raise InputError("invalid parameters:\n  " + "\n  ".join(problems))
    return {name: str(value) for name, value in values.items()}


_PSEUDO: Final = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}


def evaluate(  # noqa: PLR0911, PLR0912 - one branch per intrinsic function
    node: Any, parameters: Mapping[str, str], conditions: Mapping[str, Any], region: str = ""
) -> Any:
    """The value of a condition expression or a simple property for these parameters.

    Knows Ref (parameters and pseudo parameters), Fn::Equals, Fn::Not, Fn::And, Fn::Or,
    Condition and Fn::If; ConfigError for anything else a condition uses."""
    if isinstance(node, (str, int, float, bool)) or node is None:
        return node
    if isinstance(node, list):
        return [evaluate(n, parameters, conditions, region) for n in node]
    if not isinstance(node, dict) or len(node) != 1:
        raise ConfigError(f"cannot evaluate {node!r}")
    [(key, arg)] = node.items()
    if key == "Ref":
        if arg in parameters:
            return parameters[arg]
        if arg == "AWS::Region":
            return region
        if arg in _PSEUDO:
            return _PSEUDO[arg]
        raise ConfigError(f"cannot evaluate Ref {arg} here")
    if key == "Condition":
        return condition_value(str(arg), parameters, conditions, region)
    if key == "Fn::Equals":
        left, right = (evaluate(a, parameters, conditions, region) for a in arg)
        return _text(left) == _text(right)
    if key == "Fn::Not":
        return not evaluate(arg[0], parameters, conditions, region)
    if key == "Fn::And":
        return all(evaluate(a, parameters, conditions, region) for a in arg)
    if key == "Fn::Or":
        return any(evaluate(a, parameters, conditions, region) for a in arg)
    if key == "Fn::If":
        name, then, otherwise = arg
        chosen = then if condition_value(str(name), parameters, conditions, region) else otherwise
        return evaluate(chosen, parameters, conditions, region)
    raise ConfigError(f"cannot evaluate {key}")


def condition_value(name: str, parameters: Mapping[str, str], conditions: Mapping[str, Any], region: str = "") -> bool:
    if name not in conditions:
        raise ConfigError(f"the template uses condition {name}, which it does not define")
    return bool(evaluate(conditions[name], parameters, conditions, region))


def evaluate_conditions(
    template: Mapping[str, Any], parameters: Mapping[str, str], region: str = ""
) -> dict[str, bool]:
    conditions = template.get("Conditions") or {}
    return {name: condition_value(name, parameters, conditions, region) for name in conditions}


def created_resources(template: Mapping[str, Any], conditions: Mapping[str, bool]) -> dict[str, str]:
    """Logical id -> type of the resources these conditions create."""
    return {
        name: str(resource.get("Type", "?"))
        for name, resource in template["Resources"].items()
        if isinstance(resource, dict) and conditions.get(resource.get("Condition", ""), True)
    }


def resources_by_type(template: Mapping[str, Any], conditions: Mapping[str, bool]) -> Counter[str]:
    return Counter(created_resources(template, conditions).values())


def code_uris(template: Mapping[str, Any], conditions: Mapping[str, bool]) -> list[str]:
    """The local folders the created functions and layers deploy from (CodeUri, ContentUri)."""
    globals_uri = ((template.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    uris = []
    for name, kind in created_resources(template, conditions).items():
        properties = template["Resources"][name].get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            uri = properties.get("CodeUri", globals_uri)
        elif kind == "AWS::Serverless::LayerVersion":
            uri = properties.get("ContentUri")
        else:
            continue
        if isinstance(uri, str) and not uri.startswith("s3://"):
            uris.append(uri)
    return sorted(set(uris))


def stream_capacity(template: Mapping[str, Any], conditions: Mapping[str, bool], parameters: Mapping[str, str]) -> str:
    """``on-demand`` when a created stream is ON_DEMAND for these parameters, else ``provisioned``."""
    all_conditions = template.get("Conditions") or {}
    for name, kind in created_resources(template, conditions).items():
        if kind != "AWS::Kinesis::Stream":
            continue
        details = (template["Resources"][name].get("Properties") or {}).get("StreamModeDetails") or {}
        try:
            mode = evaluate(details.get("StreamMode", "PROVISIONED"), parameters, all_conditions)
        except ConfigError:
            continue
        if str(mode).upper() == "ON_DEMAND":
            return "on-demand"
    return "provisioned"


def pipeline_mode(parameters: Mapping[str, str]) -> str:
    return parameters.get(MODE_PARAMETER, "streaming").lower()


def with_redshift(parameters: Mapping[str, str]) -> bool:
    return parameters.get(REDSHIFT_PARAMETER, "none").lower() not in ("", "none")


def sam_deploy_command(
    sam: str,
    template: Path,
    *,
    stack_name: str | None,
    region: str | None,
    parameters: Mapping[str, str],
    given: Sequence[str],
    guided: bool,
) -> list[str]:
    """The ``sam deploy`` command line.  ``given`` names the parameters the user set (the only ones
    passed as overrides: sam and CloudFormation apply the template's defaults themselves)."""
    command = [sam, "deploy", "--template-file", str(template)]
    if guided:
        command.append("--guided")
    if stack_name:
        command += ["--stack-name", stack_name]
    if region:
        command += ["--region", region]
    if not guided:
        command += ["--capabilities", *CAPABILITIES, "--resolve-s3", "--no-fail-on-empty-changeset"]
    overrides = [f"{name}={_quote(parameters[name])}" for name in dict.fromkeys(given)]
    if overrides:
        command += ["--parameter-overrides", *overrides]
    return command


def _quote(value: str) -> str:
    # sam's KEY=VALUE parser splits on spaces and commas unless the value is quoted.
    return f'"{value}"' if re.search(r"[\s,\"]", value) or not value else value


def template_counts(template: Mapping[str, Any], conditions: Mapping[str, bool]) -> dict[str, int]:
    """The fixed resources the cost model counts, as these conditions create them."""
    created = resources_by_type(template, conditions)
    return {
        "streams": created.get("AWS::Kinesis::Stream", 0),
        "kms_keys": created.get("AWS::KMS::Key", 0),
        "alarms": created.get("AWS::CloudWatch::Alarm", 0),
    }
