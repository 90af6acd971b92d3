"""Write a calibrated CPU spec: the datasheet spec file, sized to the calibrated thread count,
with a ``cpu_calibration`` section and its provenance (see :mod:`sim.cpu_calibration`).

:func:`write_calibrated_spec` copies the datasheet YAML (every datasheet number keeps its
citation), renames it, sets ``num_units`` to the thread count (private per-core caches scaled to
match), replaces ``host.dispatch`` and ``efficiency`` by calibrated values (so that the plain
roofline on this file is calibrated too), adds the ``calibration`` citation (host, CPU, torch,
date, threads, sample counts, fit residuals) and the ``cpu_calibration`` section, and checks that
the result loads before writing it atomically. The base spec must give per-unit peaks
(``*_flops_per_cycle_per_unit``), which scale with ``num_units``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from sim.cpu_calibration import ATTENTION_KEYS, GEMM_KEYS, CpuCalibration
from sim.errors import InputError
from sim.files import write_atomic
from sim.hardware import HardwareSpec, parse_spec
from sim.spec_library import read_yaml
from sim.units import Dimension, parse_quantity

__all__ = ["calibrated_spec_data", "write_calibrated_spec", "quantity"]

_SOURCE = "calibration"


def quantity(value: float, unit: str) -> str:
    """A spec-file quantity with 4 significant digits: ``quantity(7.1e-7, "s")`` -> '710 ns'."""
    scales = {"s": ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")),
              "B/s": ((1e9, "GB/s"),), "FLOP/s": ((1e9, "GFLOP/s"),),
              "B": ((2**20, "MiB"), (2**10, "KiB"), (1.0, "B"))}[unit]
    for scale, name in scales:
        if abs(value) >= scale or (scale, name) == scales[-1]:
            return f"{value / scale:.4g} {name}"
    raise AssertionError("unreachable")


def _calibration_section(cal: CpuCalibration) -> dict[str, Any]:
    def value(record, key: str, name: str):
        number = float(getattr(record, name))
        if key == "rate":
            return quantity(number, "FLOP/s")
        if key.endswith("_in_flight"):  # a count
            return round(number, 1)
        return round(number, 4) if name.endswith("_fraction") else quantity(number, "s")

    def coefficients(record, keys):
        return {key: value(record, key, name) for key, name in keys.items()
                if math.isfinite(getattr(record, name))}

    levels = [{"level": lv.name, "bandwidth": quantity(lv.bandwidth_bytes_per_s, "B/s"),
               **({} if math.isinf(lv.capacity_bytes)
                  else {"capacity": quantity(lv.capacity_bytes, "B")})} for lv in cal.levels]
    return {
        "source": _SOURCE, "datasheet": cal.datasheet, "threads": cal.threads,
        "dispatch": quantity(cal.dispatch_s, "s"), "framework": quantity(cal.framework_s, "s"),
        "sentinel": quantity(cal.sentinel_s, "s"),
        "memory": levels,
        "page_faults": {"threshold": quantity(cal.fault_threshold_bytes, "B"),
                        "bandwidth": quantity(cal.fault_bytes_per_s, "B/s")},
        "strided_fraction": round(float(cal.strided_fraction), 4),
        "gather_fraction": round(float(cal.gather_fraction), 4),
        **({} if math.isinf(cal.gather_ramp_bytes)
           else {"gather_ramp": quantity(cal.gather_ramp_bytes, "B")}),
        "floor": {k: quantity(v, "s") for k, v in sorted(cal.floor_s.items())},
        "op_floor": {k: quantity(v, "s") for k, v in sorted(cal.op_floor_s.items())},
        "element_time": {k: quantity(v, "s") for k, v in sorted(cal.element_s.items())},
        "row_time": {k: quantity(v, "s") for k, v in sorted(cal.row_s.items())},
        "vector_bytes": quantity(cal.vector_bytes, "B"),
        "tail_time": {k: quantity(v, "s") for k, v in sorted(cal.tail_s.items())},
        "gemm": {dt: coefficients(c, GEMM_KEYS) for dt, c in sorted(cal.gemm.items())},
        "attention": {dt: coefficients(c, ATTENTION_KEYS)
                      for dt, c in sorted(cal.attention.items())},
        "intervals": {c: {"low": round(float(i.low), 4), "high": round(float(i.high), 4),
                          "count": int(i.count)}
                      for c, i in sorted(cal.intervals.items())},
        **({} if cal.host_profile is None else {"host_profile": {
            "cold_factor": round(float(cal.host_profile.cold_factor), 4),
            "cold_time": quantity(cal.host_profile.cold_time_s, "s"),
            "call_overlap": quantity(cal.host_profile.call_overlap_s, "s")}}),
    }


def calibrated_spec_data(base: dict, base_spec: HardwareSpec, cal: CpuCalibration, *,
                         name: str, provenance: str) -> dict[str, Any]:
    """The YAML data of the calibrated spec (module doc)."""
    compute = base["compute"]
    if "matrix_peak" in compute or "vector_peak" in compute:
        raise InputError("calibration needs per-unit peaks (*_flops_per_cycle_per_unit)",
                         source=base_spec.path, field="compute")
    units = base_spec.compute.num_units
    data = {**base, "name": name, "aliases": [],
            "description": f"{base.get('description', '').strip()} Calibrated by tksim for "
                           f"{cal.threads} torch thread(s): see sources.calibration."}
    data["sources"] = {**base["sources"], _SOURCE: provenance}
    data["compute"] = {**compute, "num_units": {"value": cal.threads, "source": _SOURCE}}
    data["memory"] = [_scaled_level(level, cal.threads / units) for level in base["memory"]]
    data["host"] = {**base["host"], "dispatch": {"value": quantity(cal.dispatch_s, "s"),
                                                 "source": _SOURCE}}
    one = base_spec.with_units(cal.threads)
    fp32 = cal.gemm.get("fp32")
    data["efficiency"] = {**base["efficiency"], "memory": {
        "value": round(float(min(1.0, cal.levels[-1].bandwidth_bytes_per_s
                                 / one.memory_bandwidth(one.main_memory))), 4),
        "source": _SOURCE}}
    if fp32 is not None:
        ratio = float(min(1.0, fp32.flops_per_s / one.compute.matrix_peak("fp32")))
        data["efficiency"]["matrix"] = {"value": round(ratio, 4), "source": _SOURCE}
    data["cpu_calibration"] = _calibration_section(cal)
    return data


def _scaled_level(level: dict, factor: float) -> dict:
    if not level.get("per_unit_capacity") or factor == 1:
        return level
    capacity = level["capacity"]
    source = capacity.get("source") if isinstance(capacity, dict) else None
    value = capacity["value"] if isinstance(capacity, dict) else capacity
    scaled = quantity(parse_quantity(value, Dimension.BYTES) * factor, "B")
    return {**level, "capacity": {"value": scaled, "source": source} if source else scaled}


def write_calibrated_spec(path: str | Path, base_spec: HardwareSpec, cal: CpuCalibration, *,
                          name: str, provenance: str) -> Path:
    """Write the calibrated spec to ``path`` (checked by the loader first); return the path."""
    data = calibrated_spec_data(read_yaml(Path(base_spec.path)), base_spec, cal, name=name,
                                provenance=provenance)
    text = ("# Calibrated by tksim (validation.calibrate_cpu); regenerate, do not edit.\n"
            + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True))
    parse_spec(yaml.safe_load(text), file=str(path))  # fails here, not at the next load
    return write_atomic(path, text)
