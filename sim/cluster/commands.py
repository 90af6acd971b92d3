"""The ``tksim`` subcommands for many devices: ``simulate --system`` and ``op <collective> --hw
SYSTEM`` (parsing lives in :mod:`sim.cli`)."""

from __future__ import annotations

import argparse
import json
import sys

from sim.cluster.comm import collective_plan
from sim.cluster.system import SystemSpec, load_system
from sim.cluster.workload import ParallelPlan
from sim.cost.gpu_params import A100_FIT
from sim.errors import InputError
from sim.files import write_atomic
from sim.units import DTYPE_BYTES, format_quantity

__all__ = ["simulate_system", "sweep_system", "collective_op", "load_sized_system",
           "ALGORITHMS"]

ALGORITHMS = ("ring", "tree", "nvls")


def load_sized_system(name: str, nodes: int | None) -> SystemSpec:
    system = load_system(name)
    return system if nodes is None else system.with_domains(nodes)


def simulate_system(args: argparse.Namespace, model) -> None:
    """``tksim simulate TRACE --system NAME --tp T --pp P --dp D ...``"""
    from sim.cluster.report import as_sim_result, format_cluster_report
    from sim.cluster.simulate import simulate_parallel
    from sim.trace import read_trace

    _check_writable(args.json, args.perfetto, args.csv, args.html)
    system = load_sized_system(args.system, args.nodes)
    plan = ParallelPlan(tp=args.tp, pp=args.pp, dp=args.dp, ep=args.ep,
                        microbatches=args.microbatches, schedule=args.schedule,
                        sequence_parallel=args.sequence_parallel, zero=args.zero,
                        recompute=args.recompute, virtual_stages=args.virtual_stages)
    trace = read_trace(args.trace)
    if args.fuse:
        from sim.fusion import fuse_elementwise

        trace = fuse_elementwise(trace)
    parallelize = _parallelize()
    workload = parallelize(trace, plan)
    result = simulate_parallel(workload, system, cost_model=model, allow_oom=args.allow_oom,
                               algo=args.algo, records=bool(args.perfetto or args.csv) or None,
                               symmetric=not args.all_ranks, cuda_graphs=args.cuda_graphs)
    print(format_cluster_report(result))
    if args.json:
        write_atomic(args.json, json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        print(f"wrote json: {args.json}")
    if args.html:
        from sim.cluster.html import write_cluster_html

        write_cluster_html(result, args.html)
        print(f"wrote html: {args.html}")
    if args.perfetto:
        from sim.report import write_perfetto

        write_perfetto(as_sim_result(result), args.perfetto)
        print(f"wrote perfetto: {args.perfetto}")
    if args.csv:
        write_atomic(args.csv, result.records.to_csv(index=False))
        print(f"wrote csv: {args.csv}")


def sweep_system(args: argparse.Namespace, model) -> None:
    """``tksim sweep TRACE --system NAME --global-batch B``: rank every layout."""
    from sim.cluster.sweep import candidate_plans, sweep_layouts
    from sim.trace import read_trace

    _check_writable(args.json, args.csv)
    if args.global_batch < 1:
        raise InputError(f"must be >= 1, got {args.global_batch}", field="--global-batch")
    if args.top < 1:
        raise InputError(f"must be >= 1, got {args.top}", field="--top")
    system = load_sized_system(args.system, args.nodes)
    trace = read_trace(args.trace)
    if args.fuse:
        from sim.fusion import fuse_elementwise

        trace = fuse_elementwise(trace)
    micro = int(trace.meta.get("batch") or 1)
    recompute = {"no": [False], "yes": [True], "both": [False, True]}[args.recompute]
    candidates = candidate_plans(system.num_gpus, args.global_batch, micro, tp=args.tp,
                                 pp=args.pp, zero=args.zero, recompute=recompute)
    if not candidates:
        raise InputError(f"no TP x PP from {args.tp} x {args.pp} divides the system's "
                         f"{system.num_gpus} GPUs", field="--tp/--pp")
    rows = sweep_layouts(trace, system, _parallelize(), candidates, cost_model=model,
                         progress=_progress(args.progress, len(candidates)))
    print(_sweep_table(rows, system, args.global_batch, micro, args.top))
    data = [r.to_dict() for r in rows]
    if args.json:
        write_atomic(args.json, json.dumps(data, indent=2, sort_keys=True) + "\n")
        print(f"wrote json: {args.json}")
    if args.csv:
        import pandas as pd

        write_atomic(args.csv, pd.DataFrame(data).to_csv(index=False))
        print(f"wrote csv: {args.csv}")


def _progress(enabled: bool, total: int):
    def wrap(items):
        from tqdm.auto import tqdm

        return tqdm(items, total=total, desc="sweep", unit="layout", disable=not enabled,
                    file=sys.stderr)
    return wrap


def _sweep_table(rows, system, global_batch: int, micro: int, top: int) -> str:
    fq = format_quantity
    ok = [r for r in rows if r.status == "ok"]
    lines = [f"{len(rows)} layouts of {system.num_gpus} GPUs ({system.name}), global batch "
             f"{global_batch} = dp x micro-batches x {micro}: {len(ok)} simulated, "
             f"{sum(r.status == 'out of memory' for r in rows)} out of memory, "
             f"{sum(r.status == 'invalid' for r in rows)} invalid", "",
             f"{'TPxPPxDP':>10} {'M':>4} {'ZeRO':>4} {'recomp':>6} {'T':>10} {'tokens/s':>11} "
             f"{'MFU':>6} {'bubble':>7} {'exposed':>10} {'peak mem':>9}"]
    for r in ok[:top]:
        p, f = r.plan, r.figures
        lines.append(f"{f'{p.tp}x{p.pp}x{p.dp}':>10} {p.microbatches:>4} {p.zero:>4} "
                     f"{'yes' if p.recompute else 'no':>6} {fq(f['total_s'], 's'):>10} "
                     f"{f['tokens_per_s']:>11,.0f} {f['mfu']:>6.1%} "
                     f"{f['bubble_fraction']:>7.1%} {fq(f['exposed_comm_s'], 's'):>10} "
                     f"{fq(f['peak_bytes'], 'B'):>9}{' *' if f['verdict'] == 'at risk' else ''}")
    if any(r.figures.get("verdict") == "at risk" for r in ok[:top]):
        lines.append("  * above 90 % of device memory: at risk (allocator, workspaces)")
    skipped = [r for r in rows if r.status != "ok"][:top]
    if skipped:
        lines += ["", "not simulated:"]
        lines += [f"  {r.plan.tp}x{r.plan.pp}x{r.plan.dp} ZeRO {r.plan.zero} "
                  f"recompute {'yes' if r.plan.recompute else 'no'}: {r.status}: {r.reason}"
                  for r in skipped]
    return "\n".join(lines)


def _parallelize():
    try:
        from workloads.parallel import parallelize
    except ImportError as exc:  # pragma: no cover - an install without the workloads package
        raise InputError(f"the parallel transforms need the workloads package ({exc})",
                         field="--system") from None
    return parallelize


def collective_op(args: argparse.Namespace, system: SystemSpec) -> None:
    """``tksim op allreduce|allgather|reducescatter|alltoall --bytes N --hw SYSTEM``: one
    collective over all GPUs of the system (or the first ``--ranks``)."""
    if args.bytes is None or args.bytes <= 0:
        raise InputError("a collective needs --bytes > 0", field="--bytes")
    if args.bytes > 1e15:
        raise InputError(f"absurd size: {args.bytes} bytes", field="--bytes")
    if args.dtype not in DTYPE_BYTES:
        raise InputError(f"unknown dtype {args.dtype!r}; one of {', '.join(DTYPE_BYTES)}",
                         field="--dtype")
    n = args.ranks or system.num_gpus
    if not 2 <= n <= system.num_gpus:
        raise InputError(f"must be between 2 and the system's {system.num_gpus} GPUs, got {n}",
                         field="--ranks")
    gpus = tuple(range(n))
    plan = collective_plan(system, args.kind, float(args.bytes), gpus, A100_FIT, algo=args.algo,
                           dtype=args.dtype)
    t = plan.alone_s
    fq = format_quantity
    bus = plan.detail.get("bus_bytes", 0.0)
    lines = [f"{args.kind} of {fq(args.bytes, 'B')} {args.dtype} over {n} GPUs of {system.name} "
             f"({plan.detail.get('domains', 1)} scale-up domain(s))",
             f"  algorithm {plan.algorithm}: latency {fq(plan.latency_s, 's')}"]
    for port, capacity, nbytes, cap in plan.flows:
        kind = "NIC" if port[1] == "net" else "scale-up link"
        lines.append(f"  + {fq(nbytes, 'B')} per rank over its {kind} at {fq(cap, 'B/s')} "
                     f"(sustained {fq(capacity, 'B/s')}) = {fq(nbytes / cap, 's')}")
    lines.append(f"  total {fq(t, 's')}: algorithm bandwidth {fq(args.bytes / t, 'B/s')}, "
                 f"bus bandwidth {fq(bus / t if t else 0.0, 'B/s')}")
    print("\n".join(lines))
    if args.json:
        data = {"kind": args.kind, "bytes": args.bytes, "dtype": args.dtype, "num_ranks": n,
                "hw": system.name,
                "algorithm": plan.algorithm, "t_s": t, "t_latency_s": plan.latency_s,
                "bus_bytes": bus, "algbw_bytes_per_s": args.bytes / t if t else 0.0,
                "busbw_bytes_per_s": bus / t if t else 0.0,
                "flows": [{"port": "nic" if f[0][1] == "net" else "scale-up", "bytes": f[2],
                           "rate_bytes_per_s": f[3]} for f in plan.flows]}
        write_atomic(args.json, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _check_writable(*paths: str | None) -> None:
    from sim.commands import _check_outputs

    _check_outputs(*paths)
