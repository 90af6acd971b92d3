"""Human- and machine-readable views of a hardware spec (``tksim specs show``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sim.hardware import HardwareSpec
from sim.units import format_quantity

__all__ = ["spec_dict", "spec_text"]


def spec_dict(spec: HardwareSpec) -> dict[str, Any]:
    """The spec in SI units (keys carry the unit), with its sources."""
    data = dataclasses.asdict(spec)
    data["memory"] = [dict(m) for m in data["memory"]]
    data["asynchronous"] = spec.asynchronous
    return data


def spec_text(spec: HardwareSpec) -> str:
    c, fq = spec.compute, format_quantity
    lines = [
        f"{spec.name} ({spec.kind}, {spec.vendor})  {spec.description}",
        f"  aliases: {', '.join(spec.aliases) or '-'}   file: {spec.path}",
        f"  compute: {c.num_units} units at {fq(c.clock_hz, 'Hz')}, GEMM tile "
        f"{c.gemm_tile_m}x{c.gemm_tile_n}",
        "    matrix peak: " + ", ".join(f"{k} {fq(v, 'FLOP/s')}"
                                        for k, v in c.matrix_flops_per_s.items()),
        "    vector peak: " + ", ".join(f"{k} {fq(v, 'FLOP/s')}"
                                        for k, v in c.vector_flops_per_s.items()),
        "  memory (innermost first):",
    ]
    for m in spec.memory:
        lines.append(f"    {m.name:<12} {fq(m.capacity_bytes, 'B'):>10}  "
                     f"{fq(spec.memory_bandwidth(m), 'B/s'):>12}  latency {fq(m.latency_s, 's')}")
    h = spec.host
    lines.append(f"  host: dispatch {fq(h.dispatch_s, 's')}, launch {fq(h.launch_s, 's')}, sync "
                 f"{fq(h.sync_s, 's')}, completion {fq(h.completion_s, 's')}"
                 f"  ({'asynchronous' if spec.asynchronous else 'synchronous'} device)")
    for link in spec.links:
        lines.append(f"  link {link.name} ({link.kind}): {fq(link.bandwidth_bytes_per_s, 'B/s')} "
                     f"per direction, latency {fq(link.latency_s, 's')}")
    e = spec.efficiency
    lines.append(f"  efficiency: matrix {e.matrix:.0%}, vector {e.vector:.0%}, memory "
                 f"{e.memory:.0%}" + (f"   TDP {spec.tdp_w:g} W" if spec.tdp_w else ""))
    lines.append("  sources:")
    lines += [f"    [{key}] {text}" for key, text in spec.sources.items()]
    return "\n".join(lines)
