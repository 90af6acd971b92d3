"""Text report of a parallel simulation: T, MFU, where the critical path went, per stage and per
link, and memory."""

from __future__ import annotations

from sim.cluster.result import ClusterResult
from sim.result import SimResult
from sim.units import format_quantity

__all__ = ["format_cluster_report", "as_sim_result"]



def format_cluster_report(r: ClusterResult, *, top_links: int = 4) -> str:
    fq = format_quantity
    p = r.plan
    lines = [
        f"{_workload_name(r)} on {r.system} ({r.world} x {r.device}): TP{p['tp']} x PP{p['pp']} x "
        f"DP{p['dp']}{' x EP' + str(p['ep']) if p['ep'] > 1 else ''}, {p['microbatches']} "
        f"micro-batch(es), {p['schedule']}"
        f"{' interleaved x' + str(p['virtual_stages']) if p['virtual_stages'] > 1 else ''}"
        f"{', SP' if p['sequence_parallel'] else ''}"
        f"{', ZeRO-' + str(p['zero']) if p['zero'] else ''}"
        f"{', full recompute' if p['recompute'] else ''}",
        f"T = {fq(r.total_s, 's')} per iteration   {r.tokens_per_s:,.0f} tokens/s   "
        f"MFU {r.mfu:.1%} (HFU {r.hfu:.1%})   bubble {r.bubble_fraction:.1%}",
        f"simulated {r.simulated_ranks} {'representative ' if r.simulated_ranks < r.world else ''}"
        f"rank(s) for {r.world} GPUs: "
        f"{r.num_instances:,} op instances",
    ]
    crit = {k: sum(s[f"crit_{k}_s"] for s in r.stages) for k in ("host", "compute", "comm")}
    total = sum(crit.values()) or 1.0
    lines.append("critical path: " + ", ".join(
        f"{name} {crit[key] / total:.1%}" for key, name in
        (("host", "host t_pre"), ("compute", "compute"), ("comm", "communication"))))
    lines.append("")
    lines.append(f"{'stage':>5}  {'compute':>10}  {'comm':>10}  {'exposed':>10}  {'bubble':>7}  "
                 f"{'peak mem':>9}  memory")
    for s, m in zip(r.stages, r.memory, strict=True):
        lines.append(f"{s['stage']:>5}  {fq(s['compute_s'], 's'):>10}  {fq(s['comm_s'], 's'):>10}"
                     f"  {fq(s['exposed_comm_s'], 's'):>10}  {s['bubble_fraction']:>7.1%}  "
                     f"{fq(m.peak_bytes, 'B'):>9}  {m.verdict}: {m.breakdown()}")
    busiest = sorted(r.links, key=lambda x: (-x["utilization"], x["gpu"], x["port"]))[:top_links]
    if busiest:
        lines.append("")
        lines.append("busiest links (of the representative ranks):")
        for link in busiest:
            lines.append(f"  gpu {link['gpu']:>5} {link['port']:<8} {link['utilization']:>6.1%} "
                         f"of {fq(link['capacity_bytes_per_s'], 'B/s')} over T, "
                         f"{fq(link['bytes'], 'B')} carried, busy {link['busy_fraction']:.1%}")
    return "\n".join(lines)


def _workload_name(r: ClusterResult) -> str:
    meta = r.meta
    model = meta.get("model") or "trace"
    phase = meta.get("phase", "")
    shape = f"b={meta.get('batch')}, s={meta.get('seq')}" if meta.get("batch") else ""
    return f"{model} {phase}" + (f" ({shape} per micro-batch)" if shape else "")


def as_sim_result(r: ClusterResult) -> SimResult:
    """The per-instance records as a :class:`SimResult` (rank = pipeline stage), for the
    single-device exports (Perfetto, CSV)."""
    if r.records is None:
        raise ValueError("this result kept no per-op records")
    return SimResult(ops=r.records, total_s=r.total_s, hw=f"{r.system} stage", hw_kind="gpu",
                     trace_meta=r.meta)
