"""Finding and loading spec files by name or path.

Specs are looked up in the directories of ``TKSIM_HW_SPECS`` (``os.pathsep``-separated), then in
the repository's ``hw_specs/``. A name matches a spec's ``name`` or one of its ``aliases``; a path
ending in ``.yaml``/``.yml`` is loaded directly. An unknown name fails with the closest names.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

from sim.errors import InputError, suggest
from sim.hardware import HardwareSpec, parse_spec

__all__ = ["spec_dirs", "list_specs", "load_spec", "load_spec_file", "read_yaml"]

REPO_SPECS = Path(__file__).resolve().parent.parent / "hw_specs"


def spec_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("TKSIM_HW_SPECS", "").split(os.pathsep) if p]
    return [*extra, REPO_SPECS]


def read_yaml(path: Path) -> object:
    """Parse a YAML file; a syntax error becomes a one-line :class:`InputError` with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise InputError(f"malformed YAML: {problem}", source=str(path), field=where) from None


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> HardwareSpec:
    return parse_spec(read_yaml(Path(path)), file=path)


def load_spec_file(path: str | Path) -> HardwareSpec:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such spec file", source=str(path))
    return _load_cached(str(path), path.stat().st_mtime_ns)


def list_specs() -> list[HardwareSpec]:
    """All specs on the search path, first directory winning on duplicate names, sorted by name."""
    found: dict[str, HardwareSpec] = {}
    for directory in spec_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            spec = load_spec_file(path)
            found.setdefault(spec.name, spec)
    return sorted(found.values(), key=lambda s: s.name)


def load_spec(name_or_path: str, *, units: int | None = None) -> HardwareSpec:
    """A spec by name, alias or file path, optionally using only ``units`` SMs / cores."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        spec = load_spec_file(name_or_path)
    else:
        spec = _by_name(name_or_path)
    return spec if units is None else spec.with_units(units)


def _by_name(name: str) -> HardwareSpec:
    specs = list_specs()
    for spec in specs:
        if name == spec.name or name in spec.aliases:
            return spec
    names = [s.name for s in specs] + [a for s in specs for a in s.aliases]
    raise InputError(f"unknown hardware spec {name!r}; {suggest(name, names)}", field="--hw")
