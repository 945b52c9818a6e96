#!/usr/bin/env python3
"""Refresh ``config/referers.json`` from a Snowplow referer-parser database.

Usage::

    python scripts/update_referers.py SOURCE [--output PATH] [--check]

SOURCE is a path (or an ``http(s)://`` / ``file://`` URL) to Snowplow's
``referers.yml`` or to one of the generated ``referers-*.json`` files from
https://github.com/snowplow-referer-parser/referer-parser (``resources/``).

The structure is validated (medium -> source name -> {"domains": [...],
"parameters"?: [...]}), normalised (domains stripped and lower-cased, domains
and parameters de-duplicated and sorted, keys sorted) and written
deterministically (``indent=1``, sorted keys, ASCII, trailing newline), so a
re-run on the same input produces a byte-identical file.  A domain listed under
more than one source is kept only for the first (medium, source) in sorted
order; that, unexpected entry keys (ignored) and entries without domains
(dropped) are reported on stderr as warnings.  Structural errors exit with 2.

Only the standard library is needed; PyYAML is imported lazily and only when a
YAML source is given (it is *not* a runtime dependency of clickstream-etl).
``--check`` validates and compares with the existing output without writing
(exit status 1 if the file would change).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "config" / "referers.json"
RESERVED_MEDIA = frozenset({"internal"})  # produced by the classifier itself, never by the data
ALLOWED_ENTRY_KEYS = frozenset({"domains", "parameters"})


class DatasetError(ValueError):
    """The source does not have the referer-parser structure."""


def _read_source(source: str) -> tuple[str, str]:
    """Return (text, name) for a path or URL."""
    if source.startswith(("http://", "https://", "file://")):
        with urllib.request.urlopen(source, timeout=60) as resp:  # noqa: S310 - operator-supplied URL
            return resp.read().decode("utf-8"), source
    return Path(source).read_text(encoding="utf-8"), source


def _load_yaml(text: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise SystemExit(
            "error: SOURCE is YAML but PyYAML is not installed; run `pip install pyyaml` "
            "(only needed for this update script) or pass a referers JSON file instead"
        ) from exc
    return yaml.safe_load(text)


def parse_source(text: str, name: str) -> Any:
    lowered = name.lower().split("?", 1)[0]
    if lowered.endswith((".yml", ".yaml")):
        return _load_yaml(text)
    if lowered.endswith(".json"):
        return json.loads(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return _load_yaml(text)


def _str_list(value: Any, where: str, *, allow_empty: bool) -> list[str]:
    if not isinstance(value, list):
        raise DatasetError(f"{where}: expected a list, got {type(value).__name__}")
    out: list[str] = []
    for raw in value:
        if not isinstance(raw, str):
            raise DatasetError(f"{where}: expected strings, got {raw!r}")
        item = raw.strip()
        if not item:
            raise DatasetError(f"{where}: empty string")
        out.append(item)
    if not out and not allow_empty:
        raise DatasetError(f"{where}: must not be empty")
    return out


def normalise(data: Any) -> tuple[dict[str, dict[str, dict[str, list[str]]]], list[str]]:
    """Validate and normalise; return (dataset, warnings)."""
    if not isinstance(data, dict) or not data:
        raise DatasetError("top level: expected a non-empty mapping of medium -> sources")
    warnings: list[str] = []
    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    owner: dict[str, tuple[str, str]] = {}
    for medium in sorted(data, key=str):
        sources = data[medium]
        medium_name = str(medium)
        if medium_name in RESERVED_MEDIA:
            raise DatasetError(f"medium {medium_name!r} is reserved for the classifier")
        if not isinstance(sources, dict):
            raise DatasetError(f"{medium_name}: expected a mapping of source name -> entry")
        media_out: dict[str, dict[str, list[str]]] = {}
        for source in sorted(sources, key=str):
            entry = sources[source]
            where = f"{medium_name}/{source}"
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: expected a mapping with 'domains'")
            unknown = set(map(str, entry)) - ALLOWED_ENTRY_KEYS
            if unknown:
                # e.g. the 2016 data nests "ITU Sozluk" under social/Pocket (YAML indentation slip)
                warnings.append(f"{where}: ignoring unexpected keys {sorted(unknown)}")
            if not entry.get("domains"):
                warnings.append(f"{where}: no domains; entry dropped")
                continue
            domains: list[str] = []
            for domain in sorted(
                {d.lower() for d in _str_list(entry["domains"], f"{where}/domains", allow_empty=True)}
            ):
                prev = owner.get(domain)
                if prev is not None:
                    warnings.append(f"duplicate domain {domain!r} in {where}; kept in {prev[0]}/{prev[1]}")
                    continue
                owner[domain] = (medium_name, str(source))
                domains.append(domain)
            if not domains:
                warnings.append(f"{where}: no domains left after de-duplication; entry dropped")
                continue
            new_entry: dict[str, list[str]] = {"domains": domains}
            if entry.get("parameters") is not None:
                # parameter names are case-sensitive in query strings (Bing lists both q and Q)
                params = sorted(set(_str_list(entry["parameters"], f"{where}/parameters", allow_empty=True)))
                if params:
                    new_entry["parameters"] = params
            media_out[str(source)] = new_entry
        out[medium_name] = media_out
    return out, warnings


def render(dataset: dict[str, dict[str, dict[str, list[str]]]]) -> str:
    return json.dumps(dataset, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def counts(dataset: dict[str, dict[str, dict[str, list[str]]]]) -> dict[str, tuple[int, int]]:
    return {m: (len(s), sum(len(e["domains"]) for e in s.values())) for m, s in dataset.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("source", help="referers.yml / referers*.json path or URL")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"output JSON (default: {DEFAULT_OUTPUT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate and diff against --output without writing; exit 1 if it would change",
    )
    args = parser.parse_args(argv)

    text, name = _read_source(args.source)
    try:
        dataset, warnings = normalise(parse_source(text, name))
    except (DatasetError, json.JSONDecodeError) as exc:
        print(f"error: invalid referer database {name}: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)

    rendered = render(dataset)
    total_sources = total_domains = 0
    for medium, (n_sources, n_domains) in counts(dataset).items():
        print(f"{medium:<10} {n_sources:>5} sources {n_domains:>6} domains")
        total_sources += n_sources
        total_domains += n_domains
    print(f"{'total':<10} {total_sources:>5} sources {total_domains:>6} domains")

    output: Path = args.output
    existing = output.read_text(encoding="utf-8") if output.exists() else None
    if args.check:
        if existing == rendered:
            print(f"{output}: up to date")
            return 0
        print(f"{output}: would change", file=sys.stderr)
        return 1
    if existing == rendered:
        print(f"{output}: unchanged")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(rendered, encoding="utf-8")
    tmp.replace(output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
