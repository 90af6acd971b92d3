"""What each ``tksim`` subcommand does, in terms of library calls (parsing lives in sim.cli)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from sim.errors import InputError, suggest
from sim.files import write_atomic
from sim.hardware import HardwareSpec
from sim.spec_library import list_specs, load_spec
from sim.units import format_quantity

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    handler = {
        "specs": _specs,
        "capture": _capture,
        "simulate": _simulate,
        "import": _import,
        "export": _export,
        "op": _op,
        "sweep": _sweep,
        "bench": _bench,
        "validate": _validate,
        "calibrate": _calibrate,
        "demo": _demo,
    }[args.command]
    return handler(args) or 0


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _spec(name: str, cores: int | None) -> HardwareSpec:
    if cores is not None and cores < 1:
        raise InputError(f"must be >= 1, got {cores}", field="--cores")
    return load_spec(name, units=cores)


# -- specs -------------------------------------------------------------------------------------
def _specs(args: argparse.Namespace) -> None:
    from sim.cluster import system

    if args.specs_command == "list":
        _specs_list(args, list_specs(), system.list_systems())
        return
    found = _device_or_system(args.name)
    if isinstance(found, system.SystemSpec):
        if args.cores is not None:
            raise InputError("only for a device spec, not a system", field="--cores")
        if args.json:
            _print_json(system.system_dict(found))
        else:
            print(system.system_text(found))
        return
    spec = _spec(args.name, args.cores)
    if args.json:
        from sim.spec_view import spec_dict

        _print_json(spec_dict(spec))
        return
    from sim.spec_view import spec_text

    print(spec_text(spec))


def _specs_list(args: argparse.Namespace, specs, systems) -> None:
    from sim.cluster.system import fabric_text, scale_up_text, system_dict

    if args.json:
        rows = [{"name": s.name, "kind": s.kind, "vendor": s.vendor,
                 "aliases": list(s.aliases)} for s in specs]
        keys = ("name", "kind", "aliases", "num_gpus", "device", "scale_up_kind", "scale_up",
                "fabric")
        rows += [{k: v for k, v in system_dict(s).items() if k in keys} for s in systems]
        _print_json(rows)
        return
    for s in specs:
        print(f"{s.name:<28}{s.kind:<5}{s.vendor:<8}{', '.join(s.aliases)}")
    if systems:
        print()
        print(f"systems:\n{'name':<20}{'GPUs':>6}  {'device':<24}{'scale-up':<32}fabric")
    for s in systems:
        print(f"{s.name:<20}{s.num_gpus:>6}  {s.device.name:<24}{scale_up_text(s):<32}"
              f"{fabric_text(s)}")


def _device_or_system(name: str):
    """A system spec if ``name`` names one (by name, alias, or a file with the system schema),
    else None: the caller loads a device spec, whose error suggests names of both kinds."""
    from sim.cluster import system
    from sim.spec_library import read_yaml

    if name.endswith((".yaml", ".yml")) or os.sep in name:
        data = read_yaml(Path(name)) if Path(name).is_file() else None
        is_system = isinstance(data, dict) and data.get("schema") == system.SCHEMA
        return system.load_system(name) if is_system else None
    systems = system.list_systems()
    for s in systems:
        if name == s.name or name in s.aliases:
            return s
    devices = list_specs()
    if any(name == d.name or name in d.aliases for d in devices):
        return None
    known = [x.name for x in (*devices, *systems)]
    known += [a for x in (*devices, *systems) for a in x.aliases]
    raise InputError(f"unknown device or system spec {name!r}; {suggest(name, known)}",
                     field="name")


# -- capture -----------------------------------------------------------------------------------
def _capture(args: argparse.Namespace) -> None:
    from sim.trace import write_trace

    _check_outputs(args.output)
    capture_model = _workloads().capture_model
    trace = capture_model(
        args.model if args.model or args.hf_config else "gpt2-tiny", hf_config=args.hf_config,
        phase=args.phase, batch=args.batch, seq=args.seq, context=args.context, dtype=args.dtype,
        mode=args.mode, threads=args.threads, repeat=args.repeat, warmup=args.warmup,
        seed=args.seed, layers=args.layers,
        moe_skew=args.moe_skew, op_timer=args.op_timer, host_profile=args.host_profile,
        progress=args.progress,
    )
    write_trace(trace, args.output)
    wall = trace.meta.get("unrecorded_wall_s") or trace.meta.get("measured_wall_s")
    extra = f", measured wall {format_quantity(wall, 's')}" if wall else ""
    print(f"captured {len(trace)} ops ({args.mode}, {args.phase}) -> {args.output}{extra}")


def _workloads():
    try:
        import workloads
    except ImportError as exc:
        raise InputError(f"capture needs torch and transformers ({exc.name} missing): "
                         "pip install torch==2.13.0 && pip install -e '.[capture]'") from None
    return workloads


# -- import / export ---------------------------------------------------------------------------
def _import(args: argparse.Namespace) -> None:
    from sim.trace import write_trace

    _check_outputs(args.output)
    importers = _workloads_module("workloads.importers")
    if args.format == "torch-profiler":
        if args.profiler_trace:
            raise InputError("only for chakra imports", field="--profiler-trace")
        trace = importers.import_torch_profiler(args.input)
    else:
        trace = importers.import_chakra(args.input, profiler_trace=args.profiler_trace)
    write_trace(trace, args.output)
    print(f"imported {len(trace)} ops ({args.format}) -> {args.output}")


def _export(args: argparse.Namespace) -> None:
    from sim.trace import read_trace

    _check_outputs(args.output)
    trace = read_trace(args.trace)
    _workloads_module("workloads.importers").export_chakra(trace, args.output)
    print(f"exported {len(trace)} ops ({args.format}) -> {args.output}")


def _workloads_module(name: str):
    import importlib

    _workloads()  # a clear message if torch / transformers are missing
    return importlib.import_module(name)


# -- simulate ----------------------------------------------------------------------------------
def _simulate(args: argparse.Namespace) -> None:
    from sim.cost import COST_MODELS
    from sim.trace import read_trace

    if args.system:
        if args.hw:
            raise InputError("give --hw (devices) or --system (a parallel run), not both",
                             field="--system")
        if args.cost_model == "measured":
            raise InputError("the measured cost model replays this machine's per-op times; "
                             "a system's GPUs need calibrated or roofline", field="--cost-model")
        from sim.cluster.commands import simulate_system

        return simulate_system(args, COST_MODELS[args.cost_model]())
    if not args.hw:
        raise InputError("give --hw DEVICE (repeatable) or --system SYSTEM", field="--hw")
    trace = read_trace(args.trace)
    specs = [_spec(name, args.cores) for name in args.hw]
    results = [_run_one(trace, spec, COST_MODELS[args.cost_model](), args.kv_cache, args.fuse,
                        args.cuda_graphs) for spec in specs]
    _report(results, args)


def _run_one(trace, spec, model, kv_cache: str = "trace", fuse: bool = False,
             cuda_graphs: bool = False):
    from sim.simulator import simulate

    return simulate(trace, spec, cost_model=model, kv_cache=kv_cache, fuse=fuse,
                    cuda_graphs=cuda_graphs)


def _report(results, args: argparse.Namespace) -> None:
    from sim.report.tables import format_report

    for result in results:
        print(format_report(result, group=args.group, top=args.top))
        print()
    _write_outputs(results, json_path=args.json, html_path=args.html,
                   perfetto_path=args.perfetto, csv_path=getattr(args, "csv", None))


def _write_outputs(results, *, json_path=None, html_path=None, perfetto_path=None,
                   csv_path=None) -> None:
    """Write the requested files; all are checked writable first so none is left half-done."""
    _check_outputs(json_path, html_path, perfetto_path, csv_path)
    if json_path:
        from sim.report.summary import summary

        data = summary(results[0]) if len(results) == 1 else {
            "results": [summary(r) for r in results]}
        write_atomic(json_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    if html_path:
        from sim.report import write_html

        write_html(results, html_path)
    if perfetto_path:
        from sim.report import write_perfetto

        write_perfetto(results[0], perfetto_path)
    if csv_path:
        write_atomic(csv_path, results[0].ops.to_csv(index=False))
    for label, path in (("json", json_path), ("html", html_path), ("perfetto", perfetto_path),
                        ("csv", csv_path)):
        if path:
            print(f"wrote {label}: {path}")


# -- op ----------------------------------------------------------------------------------------
def _op(args: argparse.Namespace) -> None:
    from sim.cost import COST_MODELS
    from sim.single_op import explain, make_op

    sizes = {k: getattr(args, k) for k in ("m", "n", "k", "b", "heads", "kv_heads", "seq",
                                           "context", "head_dim", "numel", "inputs", "bytes",
                                           "ranks", "flops_per_element", "causal")}
    from sim.cost.collective import COLLECTIVES

    if args.kind in COLLECTIVES:
        system = _device_or_system(args.hw)
        if system is not None:
            from sim.cluster.commands import collective_op

            return collective_op(args, system)
    if args.algo:
        raise InputError("--algo needs a collective on a system spec (--hw SYSTEM)",
                         field="--algo")
    op = make_op(args.kind, args.dtype, sizes)
    spec = _spec(args.hw, args.cores)
    cost = COST_MODELS[args.cost_model]().cost(op, spec)
    print(explain(op, spec, cost))
    if args.json:
        data = {**cost.to_dict(), "hw": spec.name, "kind": args.kind, "dtype": args.dtype,
                "cost_model": args.cost_model,
                "flops": op.flops, "bytes": op.bytes_total, "attrs": dict(op.attrs)}
        write_atomic(args.json, json.dumps(data, indent=2, sort_keys=True) + "\n")


# -- sweep -------------------------------------------------------------------------------------
def _sweep(args: argparse.Namespace) -> None:
    from sim.cluster.commands import sweep_system
    from sim.cost import COST_MODELS

    _workloads()  # the parallel transforms
    sweep_system(args, COST_MODELS[args.cost_model]())


# -- bench -------------------------------------------------------------------------------------
def _bench(args: argparse.Namespace) -> None:
    from sim.bench import run_bench

    if not 100 <= args.ops <= 10_000_000:
        raise InputError(f"must be between 100 and 10000000, got {args.ops}", field="--ops")
    if not 1 <= args.repeats <= 100:
        raise InputError(f"must be between 1 and 100, got {args.repeats}", field="--repeats")
    result = run_bench(load_spec(args.hw), num_ops=args.ops, repeats=args.repeats)
    print(f"simulated ops/s (engine):       {result.engine_ops_per_s:12,.0f}")
    print(f"simulated ops/s (end to end):   {result.end_to_end_ops_per_s:12,.0f}")
    print(f"SimPy raw events/s (empty loop):{result.raw_events_per_s:12,.0f}")
    print(f"ratio engine / raw:             {result.ratio:12.2f}   (target >= 0.25)")
    print(f"({result.num_ops} ops, median of {result.repeats} interleaved runs)")
    if args.json:
        write_atomic(args.json, json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")


# -- validate ----------------------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> None:
    _check_outputs(args.json, args.html)
    if args.hw:
        _validate_cpu(args)
    else:
        _validate_dataset(args)


def _validate_cpu(args: argparse.Namespace) -> None:
    if len(args.hw) > 1:
        return _compare_cpu(args)
    _workloads()  # re-timing kernels needs torch
    from validation import validate_cpu, write_cpu_report
    from validation.cpu_report import cpu_results_markdown

    results = validate_cpu(args.hw[0], quick=args.quick, threads=args.threads,
                           progress=args.progress)
    print(cpu_results_markdown(results), end="")
    if args.html:
        write_cpu_report(results, args.html)
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=1, sort_keys=True) + "\n")


def _compare_cpu(args: argparse.Namespace) -> None:
    if args.html:
        raise InputError("a comparison of specs has no HTML report; use --json", field="--html")
    _workloads()
    from validation.cpu_compare import compare_cpu, compare_markdown

    results = compare_cpu(args.hw, quick=args.quick, threads=args.threads,
                          progress=args.progress)
    print(compare_markdown(results), end="")
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=1, sort_keys=True) + "\n")


def _calibrate(args: argparse.Namespace) -> None:
    if args.collectives or args.system:
        return _calibrate_collectives(args)
    _workloads()
    from validation import calibrate_cpu

    path = calibrate_cpu(args.threads, args.quick, args.output, args.progress, datasheet=args.hw)
    print(f"wrote calibrated spec: {path} (use it as --hw {path})")


def _calibrate_collectives(args: argparse.Namespace) -> None:
    from validation.collective_calibrate import calibrate_system

    for flag, value in (("--collectives", args.collectives), ("--system", args.system),
                        ("-o", args.output)):
        if not value:
            raise InputError("a collective calibration needs --collectives CSV, --system NAME "
                             "and -o OUT.yaml", field=flag)
    _check_outputs(args.output)
    path = calibrate_system(args.system, args.collectives, args.output, name=args.name)
    print(f"wrote calibrated system: {path} (use it as --system {path})")


def _validate_dataset(args: argparse.Namespace) -> None:
    from validation.datasets import DATASETS
    from validation.datasets.common import DataMissing
    from validation.gpu_report import gpu_results_markdown, write_gpu_report
    from validation.gpu_validation import run_gpu_validation

    if args.dataset == "cluster":
        return _validate_cluster(args)
    if args.dataset not in ("all", *DATASETS):
        raise InputError(f"unknown dataset {args.dataset!r}; one of all, cluster, "
                         f"{', '.join(DATASETS)}", field="--dataset")
    try:
        results = run_gpu_validation(args.dataset, args.data_dir)
    except DataMissing as exc:
        raise InputError(f"ground-truth data not found ({exc}); pass --data-dir or set "
                         "TKSIM_GROUND_TRUTH", field="--data-dir") from None
    _show_validation(results, gpu_results_markdown, write_gpu_report, args)


def _validate_cluster(args: argparse.Namespace) -> None:
    _workloads()  # the parallel runs capture their models on fake tensors
    from validation.cluster_report import write_cluster_report
    from validation.cluster_validation import cluster_results_markdown, run_cluster_validation
    from validation.datasets.common import DataMissing

    try:
        results = run_cluster_validation(args.data_dir, quick=args.quick,
                                         megatron_rows=[0, 4] if args.quick else None)
    except DataMissing as exc:
        raise InputError(f"ground-truth data not found ({exc}); pass --data-dir or set "
                         "TKSIM_GROUND_TRUTH", field="--data-dir") from None
    _show_validation(results, cluster_results_markdown, write_cluster_report, args)


def _show_validation(results: dict, markdown, write_html, args: argparse.Namespace) -> None:
    print(markdown(results), end="")
    print(f"runtime {results['runtime_s']:.1f} s")
    if args.html:
        write_html(results, args.html)
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=1, sort_keys=True) + "\n")


def _check_outputs(*paths: str | None) -> None:
    for path in paths:
        if path and not Path(path).resolve().parent.is_dir():
            raise InputError("output directory does not exist", source=str(path))


# -- demo --------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> None:
    from sim.demo import run_demo

    run_demo(model=args.model, batch=args.batch, seq=args.seq, hw=args.hw, out_dir=args.out,
             capture=_workloads().capture_model)
