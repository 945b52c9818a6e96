#!/usr/bin/env python3
"""Refresh ``config/referers.json`` from a Snowplow referer-parser database.

Usage::

    python scripts/update_referers.py SOURCE [--rev REV] [--output PATH] [--check]

SOURCE is a path (or an ``http(s)://`` / ``file://`` URL) to Snowplow's
``referers.yml`` or to one of the generated ``referers-*.json`` files from
https://github.com/snowplow-referer-parser/referer-parser (``resources/``), or a local
copy of that repository: a checkout (its ``resources/referers.yml`` is read) or a git
directory such as a bare mirror (``resources/referers.yml`` at ``--rev``, default
``HEAD``, read with ``git show``).  For a repository the script prints the commit and
its date; it always prints the SHA-256 of the output, which ``config/REFERERS.md``
records.

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
import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# No default output: the package ships its own Apache-2.0 list in config/referers.json; a
# Snowplow (GPL-3.0) database belongs in a file of the user's, named by transform.referer.dataset.
RESERVED_MEDIA = frozenset({"internal"})  # produced by the classifier itself, never by the data
ALLOWED_ENTRY_KEYS = frozenset({"domains", "parameters"})
REPOSITORY_FILE = "resources/referers.yml"


class DatasetError(ValueError):
    """The source does not have the referer-parser structure."""


def _git(git_dir: Path, *args: str) -> str:
    """Run git on ``git_dir`` (a work tree or a git directory); its stdout, or DatasetError."""
    option = "-C" if (git_dir / ".git").exists() else "--git-dir"
    try:
        done = subprocess.run(["git", option, str(git_dir), *args], capture_output=True, check=True, text=True)
    except FileNotFoundError as exc:
        raise DatasetError("git is needed to read a repository SOURCE but is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise DatasetError(f"git {' '.join(args)} failed in {git_dir}: {exc.stderr.strip()}") from exc
    return done.stdout


def _read_repository(directory: Path, rev: str) -> tuple[str, str, str | None]:
    """(text, name, "commit (date)") of ``resources/referers.yml`` in a checkout or git directory."""
    checkout = directory / REPOSITORY_FILE
    if checkout.is_file() and rev == "HEAD":
        text = checkout.read_text(encoding="utf-8")
        try:
            commit = _git(directory, "log", "-1", "--format=%H (%cs)", "HEAD").strip()
        except DatasetError:
            commit = "(not a git checkout: no commit known)"
        return text, str(checkout), commit
    text = _git(directory, "show", f"{rev}:{REPOSITORY_FILE}")
    commit = _git(directory, "log", "-1", "--format=%H (%cs)", rev, "--", REPOSITORY_FILE).strip()
    head = _git(directory, "log", "-1", "--format=%H (%cs)", rev).strip()
    if head != commit:
        commit = f"{head}; {REPOSITORY_FILE} last changed in {commit}"
    return text, f"{directory}:{REPOSITORY_FILE}", commit


def _read_source(source: str, rev: str = "HEAD") -> tuple[str, str, str | None]:
    """Return (text, name, commit or None) for a path, URL or repository."""
    if source.startswith(("http://", "https://", "file://")):
        with urllib.request.urlopen(source, timeout=60) as resp:  # noqa: S310 - operator-supplied URL
            return resp.read().decode("utf-8"), source, None
    path = Path(source)
    if path.is_dir():
        return _read_repository(path, rev)
    return path.read_text(encoding="utf-8"), source, None


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
    parser.add_argument("source", help="referers.yml / referers*.json path or URL, or a referer-parser repository")
    parser.add_argument(
        "--rev", default="HEAD", help="revision to read when SOURCE is a git repository (default: HEAD)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="output JSON, e.g. ~/referers.json (then set [transform.referer] dataset to it)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate and diff against --output without writing; exit 1 if it would change",
    )
    args = parser.parse_args(argv)

    try:
        text, name, commit = _read_source(args.source, args.rev)
        dataset, warnings = normalise(parse_source(text, name))
    except (DatasetError, json.JSONDecodeError) as exc:
        print(f"error: invalid referer database {args.source}: {exc}", file=sys.stderr)
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
    if commit is not None:
        print(f"source commit {commit}")
    print(f"sha256 {hashlib.sha256(rendered.encode('utf-8')).hexdigest()}  (of the rendered output)")

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
