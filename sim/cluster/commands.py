"""The ``tksim`` subcommands for many devices: ``simulate --system`` and ``op <collective> --hw
SYSTEM`` (parsing lives in :mod:`sim.cli`)."""

from __future__ import annotations

import argparse
import json

from sim.cluster.comm import collective_options
from sim.cluster.system import SystemSpec, load_system
from sim.cluster.workload import ParallelPlan
from sim.cost.gpu_params import A100_FIT
from sim.errors import InputError
from sim.files import write_atomic
from sim.units import format_quantity

__all__ = ["simulate_system", "collective_op", "load_sized_system", "ALGORITHMS"]

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
                               symmetric=not args.all_ranks)
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
    n = args.ranks or system.num_gpus
    if not 2 <= n <= system.num_gpus:
        raise InputError(f"must be between 2 and the system's {system.num_gpus} GPUs, got {n}",
                         field="--ranks")
    gpus = tuple(range(n))
    options = collective_options(system, args.kind, float(args.bytes), gpus, A100_FIT)
    if args.algo:
        options = [o for o in options if o.algorithm.split("/")[0] == args.algo]
        if not options:
            raise InputError(f"{args.algo} is not available for {args.kind} over {n} GPUs of "
                             f"{system.name}", field="--algo")
    plan = min(options, key=lambda p: (p.alone_s, p.algorithm))
    t = plan.alone_s
    fq = format_quantity
    bus = plan.detail.get("bus_bytes", 0.0)
    lines = [f"{args.kind} of {fq(args.bytes, 'B')} over {n} GPUs of {system.name} "
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
        data = {"kind": args.kind, "bytes": args.bytes, "num_ranks": n, "hw": system.name,
                "algorithm": plan.algorithm, "t_s": t, "t_latency_s": plan.latency_s,
                "bus_bytes": bus, "algbw_bytes_per_s": args.bytes / t if t else 0.0,
                "busbw_bytes_per_s": bus / t if t else 0.0,
                "flows": [{"port": "nic" if f[0][1] == "net" else "scale-up", "bytes": f[2],
                           "rate_bytes_per_s": f[3]} for f in plan.flows]}
        write_atomic(args.json, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _check_writable(*paths: str | None) -> None:
    from sim.commands import _check_outputs

    _check_outputs(*paths)
