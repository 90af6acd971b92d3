"""Strict reading of a YAML mapping: every key known, every number in range and cited.

A :class:`Reader` walks one mapping of a spec file and remembers where it is (file and key path),
so that each complaint names both: ``hw_specs/h100.yaml: memory[2].bandwidth: must be > 0``.
Keys that were never read are reported by :meth:`Reader.finish`, so typos do not pass silently.

Citations: a section that holds numbers names its source with ``source: <id>`` (an id from the
file's top-level ``sources``), and any single value may instead be written
``{value: "3.35 TB/s", source: <id>}``. A number without a reachable citation is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.errors import InputError
from sim.units import Dimension, UnitError, parse_quantity

__all__ = ["Reader", "read_sources", "open_spec"]


class Reader:
    """Reads one mapping at ``path`` inside ``file``; ``sources`` are the file's citation ids."""

    def __init__(
        self,
        data: object,
        *,
        file: str,
        path: str,
        sources: Mapping[str, str],
        inherited_source: str | None = None,
    ):
        if not isinstance(data, Mapping):
            raise InputError("expected a mapping", source=file, field=path or "(top level)")
        self.data = data
        self.file = file
        self.path = path
        self.sources = sources
        self._used: set[str] = set()
        self.source = self._read_source(inherited_source)

    # -- structure -------------------------------------------------------------------------
    def error(self, key: str | None, message: str) -> InputError:
        return InputError(message, source=self.file, field=self._key_path(key))

    def has(self, key: str) -> bool:
        return key in self.data

    def section(self, key: str, *, required: bool = True) -> Reader | None:
        """A nested mapping, citing its own source or inheriting this one's."""
        if key not in self.data:
            if required:
                raise self.error(key, "missing field")
            return None
        self._used.add(key)
        return Reader(
            self.data[key],
            file=self.file,
            path=self._key_path(key),
            sources=self.sources,
            inherited_source=self.source,
        )

    def sections(self, key: str, *, required: bool = True) -> list[Reader]:
        """A list of mappings (e.g. memory levels), each read strictly."""
        items = self.raw(key, list, required=required)
        if items is None:
            return []
        return [
            Reader(
                item,
                file=self.file,
                path=f"{self._key_path(key)}[{i}]",
                sources=self.sources,
                inherited_source=self.source,
            )
            for i, item in enumerate(items)
        ]

    def unread(self) -> list[str]:
        """Keys not yet read (for maps of dtype -> value)."""
        return [k for k in self.data if k not in self._used and k != "source"]

    def finish(self) -> None:
        """Fail on any key that was never read: a typo must not pass silently."""
        unknown = [k for k in self.data if k not in self._used and k != "source"]
        if unknown:
            raise self.error(str(unknown[0]), "unknown field")

    # -- values ----------------------------------------------------------------------------
    def raw(self, key: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        if key not in self.data:
            if required:
                raise self.error(key, "missing field")
            return None
        self._used.add(key)
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.error(key, f"expected {names}, got {type(value).__name__}")
        return value

    def text(self, key: str, *, required: bool = True, choices: tuple[str, ...] = ()) -> Any:
        value = self.raw(key, str, required=required)
        if value is not None and choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def quantity(
        self,
        key: str,
        dimension: Dimension,
        *,
        low: float = 0.0,
        high: float = float("inf"),
        allow_zero: bool = False,
        required: bool = True,
        default: float | None = None,
    ) -> float | None:
        """A cited number in SI units: ``low < value <= high`` (``low <= value`` if zero ok)."""
        if key not in self.data:
            if required:
                raise self.error(key, "missing field")
            return default
        self._used.add(key)
        value, source = self._value_and_source(key)
        if source is None:
            raise self.error(key, "no source: add 'source: <id>' to this section or the value")
        try:
            number = parse_quantity(value, dimension)
        except UnitError as exc:
            raise self.error(key, str(exc)) from None
        too_low = number < low if allow_zero else number <= low
        if too_low:
            raise self.error(key, f"must be {'>=' if allow_zero else '>'} {low:g}, got {value!r}")
        if number > high:
            raise self.error(key, f"absurd value {value!r}: must be <= {high:g} {dimension.value}")
        return number

    # -- internals -------------------------------------------------------------------------
    def _value_and_source(self, key: str) -> tuple[object, str | None]:
        value = self.data[key]
        if isinstance(value, Mapping):
            inner = Reader(
                value,
                file=self.file,
                path=self._key_path(key),
                sources=self.sources,
                inherited_source=self.source,
            )
            number = inner.raw("value", (int, float, str))
            inner.finish()
            return number, inner.source
        return value, self.source

    def _read_source(self, inherited: str | None) -> str | None:
        if "source" not in self.data:
            return inherited
        source = self.data["source"]
        if not isinstance(source, str) or source not in self.sources:
            known = ", ".join(sorted(self.sources)) or "(none)"
            raise InputError(
                f"unknown source {source!r}; cite one of: {known}",
                source=self.file,
                field=self._key_path("source"),
            )
        return source

    def _key_path(self, key: str | None) -> str:
        if key is None:
            return self.path or "(top level)"
        return f"{self.path}.{key}" if self.path else key


def read_sources(data: Mapping, file: str) -> dict[str, str]:
    """The ``sources`` table of a spec file: citation id -> citation text, none empty."""
    sources = data.get("sources")
    if not isinstance(sources, Mapping) or not sources:
        raise InputError("missing or empty: every number must cite a source", source=file,
                         field="sources")
    for key, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise InputError("a source must be a non-empty citation string", source=file,
                             field=f"sources.{key}")
    return dict(sources)


def open_spec(data: object, *, file: str, schema: str) -> tuple[Reader, dict[str, str]]:
    """The top-level :class:`Reader` of a parsed spec file and its sources, after checking that
    it is a mapping with cited ``sources`` and the expected ``schema``."""
    if not isinstance(data, Mapping):
        raise InputError("expected a mapping at top level", source=file)
    sources = read_sources(data, file)
    top = Reader(data, file=file, path="", sources=sources)
    found = top.text("schema")
    if found != schema:
        raise top.error("schema", f"expected {schema!r}, got {found!r}")
    top.raw("sources", Mapping)
    return top, sources
