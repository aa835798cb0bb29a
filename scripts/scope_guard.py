"""Scope guard: fail when product code mentions a concept kept out of this release.

Reads ``scripts/scope_terms.yaml`` (term, regex, why, allowed path globs), scans the product
directories it names (never docs or tests) and prints ``file:line: term — why`` per hit.
Exit status 1 on any hit, 0 when clean. Run by ``make scope`` (part of ``make check``).

Usage: ``python scripts/scope_guard.py [--root DIR] [--terms FILE]``
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml  # type: ignore[import-untyped]

__all__ = ["Hit", "Term", "load_terms", "main", "scan"]

_HERE = Path(__file__).resolve().parent
_DEFAULT_TERMS = _HERE / "scope_terms.yaml"


@dataclass(frozen=True)
class Term:
    """One concept kept out: its regex, the reason, and path globs where it is allowed."""

    term: str
    pattern: re.Pattern[str]
    why: str
    allow: tuple[str, ...]


@dataclass(frozen=True)
class Hit:
    """A line of product code that mentions a term."""

    path: str
    line: int
    term: Term

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.term.term} — {self.term.why}"


@dataclass(frozen=True)
class Config:
    """What to scan and which terms to look for."""

    paths: tuple[str, ...]
    suffixes: frozenset[str]
    names: frozenset[str]
    skip_dirs: frozenset[str]
    terms: tuple[Term, ...]


def load_terms(path: Path) -> Config:
    """Parse the YAML file; a malformed entry fails loudly rather than guarding nothing."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    scan_cfg = doc["scan"]
    terms = []
    for entry in doc["terms"]:
        allowed = entry.get("allow") or []
        allow = tuple(a["path"] if isinstance(a, dict) else str(a) for a in allowed)
        terms.append(
            Term(
                term=str(entry["term"]),
                pattern=re.compile(str(entry["pattern"]).strip()),
                why=" ".join(str(entry["why"]).split()),
                allow=allow,
            )
        )
    if not terms:
        raise ValueError(f"{path}: no terms")
    return Config(
        paths=tuple(scan_cfg["paths"]),
        suffixes=frozenset(scan_cfg.get("suffixes", [".py"])),
        names=frozenset(scan_cfg.get("names", [])),
        skip_dirs=frozenset(scan_cfg.get("skip_dirs", [])),
        terms=tuple(terms),
    )


def _files(root: Path, config: Config) -> Iterator[Path]:
    for top in config.paths:
        base = root / top
        if base.is_file():
            yield base
            continue
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel_parts = path.relative_to(root).parts
            if any(part in config.skip_dirs for part in rel_parts[:-1]):
                continue
            if path.is_file() and (path.suffix in config.suffixes or path.name in config.names):
                yield path


def scan(root: Path, config: Config) -> list[Hit]:
    """Every hit under ``root``, in path and line order."""
    hits = []
    for path in _files(root, config):
        rel = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data is not code
        for number, line in enumerate(text.splitlines(), start=1):
            for term in config.terms:
                if term.pattern.search(line) and not any(
                    fnmatch.fnmatch(rel, glob) for glob in term.allow
                ):
                    hits.append(Hit(rel, number, term))
    return hits


def main(argv: Sequence[str] | None = None) -> int:
    """Print the hits; return 1 if there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=_HERE.parent, help="repository root")
    parser.add_argument("--terms", type=Path, default=_DEFAULT_TERMS, help="the YAML term list")
    args = parser.parse_args(argv)
    config = load_terms(args.terms)
    hits = scan(args.root.resolve(), config)
    for hit in hits:
        print(hit)
    if hits:
        print(f"scope guard: {len(hits)} hit(s); see {args.terms.name} for why and exceptions")
        return 1
    print(f"scope guard: clean ({len(config.terms)} terms over {', '.join(config.paths)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
