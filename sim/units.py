"""Units: parse human quantities from spec files into SI floats, once, at load.

Inside tksim every number is an SI float whose unit is in its name (``_s``, ``_bytes``,
``_bytes_per_s``, ``_flops_per_s``, ``_hz``, ``_w``). Spec files may instead write
``"3.35 TB/s"``, ``"80 GiB"``, ``"1.98 GHz"``, ``"5 us"`` or a network rate in bits,
``"400 Gb/s"`` (= 50e9 B/s); :func:`parse_quantity` turns such a string into SI and checks that
its dimension is the one the field expects.

Decimal prefixes (k, M, G, T, P) are powers of 1000 and binary prefixes (Ki, Mi, Gi, Ti) powers of
1024: "80 GB" is 80e9 bytes, "80 GiB" is 85.9e9 bytes.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = ["Dimension", "UnitError", "parse_quantity", "format_quantity", "DTYPE_BYTES"]


class Dimension(Enum):
    """The physical dimension a spec field expects; its value is the SI unit's name."""

    TIME = "s"
    BYTES = "B"
    BANDWIDTH = "B/s"
    FLOP_RATE = "FLOP/s"
    FREQUENCY = "Hz"
    POWER = "W"
    COUNT = "1"
    RATIO = "ratio"


class UnitError(ValueError):
    """A quantity string that cannot be read, or is in the wrong dimension."""


_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME_PREFIX = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12}

# Base unit spelling -> dimension. Prefixes are split off by the regex below.
_BASE_UNITS = {
    "B": Dimension.BYTES,
    "B/s": Dimension.BANDWIDTH,
    "b/s": Dimension.BANDWIDTH,  # bits: network rates ("400 Gb/s" NDR InfiniBand = 50e9 B/s)
    "bit/s": Dimension.BANDWIDTH,
    "FLOP/s": Dimension.FLOP_RATE,
    "FLOPS": Dimension.FLOP_RATE,
    "OP/s": Dimension.FLOP_RATE,
    "OPS": Dimension.FLOP_RATE,
    "Hz": Dimension.FREQUENCY,
    "W": Dimension.POWER,
}

_QUANTITY = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")
_PREFIXED = re.compile(
    r"^(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?(B/s|b/s|bit/s|B|FLOP/s|FLOPS|OP/s|OPS|Hz|W)$")
_BITS_PER_BYTE = 8

#: Bytes per element of the dtypes tksim knows (names as used in traces and specs).
DTYPE_BYTES = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "fp4": 0.5,
}


def parse_quantity(value: object, dimension: Dimension) -> float:
    """Return ``value`` in SI units of ``dimension``.

    Numbers (int/float) are taken as already SI. Strings carry a unit: ``"3.35 TB/s"``,
    ``"989.4 TFLOP/s"``, ``"50 MiB"``, ``"1.98 GHz"``, ``"5 us"``, ``"700 W"``. A count or ratio
    may be a plain number or a numeric string. Raises :class:`UnitError` naming what was expected.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected a {dimension.value} quantity, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected a {dimension.value} quantity, got {type(value).__name__}")
    match = _QUANTITY.match(value)
    if not match:
        raise UnitError(f"cannot read quantity {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    if dimension in (Dimension.COUNT, Dimension.RATIO):
        if unit:
            raise UnitError(f"expected a plain number, got unit {unit!r} in {value!r}")
        return number
    if dimension is Dimension.TIME:
        if unit not in _TIME_PREFIX:
            raise UnitError(f"expected a time (s, ms, us, ns), got {value!r}")
        return number * _TIME_PREFIX[unit]
    return number * _unit_scale(unit, dimension, value)


def _unit_scale(unit: str, dimension: Dimension, original: str) -> float:
    match = _PREFIXED.match(unit)
    if not match or _BASE_UNITS[match.group(2)] is not dimension:
        raise UnitError(f"expected a {dimension.value} quantity, got {original!r}")
    prefix = match.group(1) or ""
    scale = _BINARY[prefix] if prefix in _BINARY else _DECIMAL[prefix]
    return scale / _BITS_PER_BYTE if match.group(2) in ("b/s", "bit/s") else scale


def format_quantity(value: float, unit: str) -> str:
    """Format an SI float with a decimal prefix for display: ``format_quantity(3.35e12, "B/s")``."""
    if value == 0:
        return f"0 {unit}"
    if unit == "s":
        for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value / 1e-9:.3g} ns"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
