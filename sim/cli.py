"""The ``tksim`` command line: thin subcommands over library functions.

Every error a user can cause (bad file, unknown name, absurd size) prints one line,
``tksim: error: <file>: <field>: <message>``, and exits with code 2; no traceback, no partial file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sim.errors import InputError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message, source=self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tksim", description="Predict and explain the time of Transformer "
                     "work on hardware you may not own.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_specs(sub)
    _add_capture(sub)
    _add_interop(sub)
    _add_simulate(sub)
    _add_op(sub)
    _add_sweep(sub)
    _add_bench(sub)
    _add_calibrate(sub)
    _add_validate(sub)
    _add_demo(sub)
    return parser


def _add_hw(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    help_text = "spec name, alias or YAML path (tksim specs list)"
    if many:
        p.add_argument("--hw", action="append", required=True, help=help_text + "; repeatable")
    else:
        p.add_argument("--hw", required=True, help=help_text)
    p.add_argument("--cores", type=int, help="use only N units (CPU cores / SMs) of the device")


def _add_cost_model(p: argparse.ArgumentParser, *, measured: bool = False) -> None:
    choices = ("calibrated", "roofline", "measured") if measured else ("calibrated", "roofline")
    p.add_argument("--cost-model", default="calibrated", choices=choices,
                   help="calibrated (default): GPU sub-models with parameters fitted on A100 "
                   "(see docs/gpu-validation.md), plain roofline on CPUs; roofline: the spec's "
                   "efficiency fractions only" + ("; measured: replay the trace's measured_s "
                                                  "(same-machine baseline)" if measured else ""))


def _add_specs(sub) -> None:
    p = sub.add_parser("specs", help="list or show hardware specs: devices and systems")
    specs_sub = p.add_subparsers(dest="specs_command", required=True, parser_class=_Parser)
    ls = specs_sub.add_parser("list", help="list known devices, then systems")
    ls.add_argument("--json", action="store_true", help="print JSON: name, kind (gpu, cpu or "
                    "system), aliases; systems also num_gpus, device, scale_up, fabric")
    show = specs_sub.add_parser("show", help="show one device or system spec with its sources")
    show.add_argument("name", help="device or system name, alias or YAML path")
    show.add_argument("--cores", type=int)
    show.add_argument("--json", action="store_true")


def _add_capture(sub) -> None:
    p = sub.add_parser("capture", help="capture an op trace of a PyTorch model: measured on this "
                       "CPU (--real) or on fake tensors, any size (--fake)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="built-in model name (default gpt2-tiny)")
    source.add_argument("--hf-config", help="a HF transformers config.json (random weights)")
    p.add_argument("--phase", default="prefill", choices=("prefill", "decode", "train"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=64, help="tokens per sequence (prefill, train)")
    p.add_argument("--context", type=int, help="tokens already in the KV cache (decode)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--real", dest="mode", action="store_const", const="real",
                      help="run on this CPU and time every op (default)")
    mode.add_argument("--fake", dest="mode", action="store_const", const="fake",
                      help="fake tensors: any model size, no memory, no timings")
    p.add_argument("--layers", type=int, help="keep only the first N layers (quick looks)")
    p.add_argument("--moe-skew", type=float,
                   help="MoE routing: Zipf exponent of tokens over experts (0 = balanced, default)")
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    p.add_argument("--repeat", type=int, default=1, help="recorded runs; median per op")
    p.add_argument("--warmup", type=int, default=1, help="un-recorded runs first (real mode)")
    p.add_argument("--op-timer", default="auto", choices=("auto", "python"),
                   help="real mode: time ops from inside the dispatcher (auto: when a C++ "
                   "compiler can build the timer) or with the recorder's Python timer")
    p.add_argument("--host-profile", action="store_true",
                   help="also time a shrunken twin of the model (real, tiny; fake mode too) for "
                   "each op's warm host time, which a calibrated CPU spec turns into the step's "
                   "host time")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("-o", "--output", required=True, help="trace file (.json or .json.gz)")
    p.set_defaults(mode="real")


def _add_interop(sub) -> None:
    imp = sub.add_parser("import", help="turn a torch.profiler or Chakra / PyTorch execution "
                         "trace into a tksim trace")
    imp.add_argument("format", choices=("torch-profiler", "chakra"))
    imp.add_argument("input", help="the trace to import (.json or .json.gz)")
    imp.add_argument("--profiler-trace", help="chakra: a torch.profiler trace of the same run, "
                     "for per-op durations")
    imp.add_argument("-o", "--output", required=True, help="tksim trace (.json or .json.gz)")
    exp = sub.add_parser("export", help="write a tksim trace in another format")
    exp.add_argument("format", choices=("chakra",))
    exp.add_argument("trace", help="the tksim trace to export")
    exp.add_argument("-o", "--output", required=True, help="PyTorch execution trace JSON")


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a trace on one or more devices, or split "
                       "over a system's GPUs (--system with --tp/--pp/--dp)")
    p.add_argument("trace")
    p.add_argument("--hw", action="append", help="device spec name, alias or YAML path "
                   "(tksim specs list); repeatable to compare devices")
    p.add_argument("--cores", type=int, help="use only N units (CPU cores / SMs) of the device")
    _add_cost_model(p, measured=True)
    p.add_argument("--fuse", action="store_true", help="run chains of elementwise and "
                   "reduction ops as one kernel each (fused kernels, torch.compile)")
    p.add_argument("--cuda-graphs", action="store_true", help="GPU: launch the step as CUDA "
                   "graphs (serving engines): one launch instead of a dispatch per op")
    _add_parallel(p)
    p.add_argument("--kv-cache", default="trace", choices=("trace", "paged"),
                   help="paged: decode appends write only the new token (serving engines), "
                   "instead of the captured HF cache's full copy per step")
    p.add_argument("--group", default="category",
                   choices=("category", "layer", "module", "phase", "bound", "stream"))
    p.add_argument("--top", type=int, default=12, help="rows of the breakdown table")
    p.add_argument("--json", help="write the summary JSON here")
    p.add_argument("--html", help="write the plotly HTML report here")
    p.add_argument("--perfetto", help="write a Perfetto / Chrome trace JSON here")
    p.add_argument("--csv", help="write the per-op records (CSV) here")


def _add_parallel(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("many devices (with --system)")
    g.add_argument("--system", help="system spec (node, rack or cluster; tksim specs list): "
                   "split the trace over its GPUs")
    g.add_argument("--nodes", type=int, help="resize the system to N nodes (scale-up domains)")
    for name, text in (("tp", "tensor-parallel degree"), ("pp", "pipeline stages"),
                       ("dp", "data-parallel degree"), ("ep", "expert-parallel degree (MoE)")):
        g.add_argument(f"--{name}", type=int, default=1, help=f"{text} (default 1)")
    g.add_argument("--microbatches", type=int, default=1,
                   help="micro-batches per iteration; the trace is one micro-batch")
    g.add_argument("--schedule", default="1f1b", choices=("1f1b", "gpipe"))
    g.add_argument("--virtual-stages", type=int, default=1,
                   help="model chunks per pipeline stage: Megatron's interleaved 1F1B (default 1)")
    g.add_argument("--sp", dest="sequence_parallel", action="store_true",
                   help="sequence parallelism with TP (reduce-scatter / all-gather)")
    g.add_argument("--zero", type=int, default=0, choices=(0, 1, 2, 3),
                   help="ZeRO stage: shard optimizer state (1), gradients (2), weights (3)")
    g.add_argument("--recompute", action="store_true", help="full activation recomputation")
    g.add_argument("--algo", choices=("ring", "tree", "nvls"),
                   help="force one collective algorithm")
    g.add_argument("--allow-oom", action="store_true",
                   help="simulate even if a stage does not fit in device memory")
    g.add_argument("--all-ranks", action="store_true",
                   help="simulate every rank, not one representative per pipeline stage (a "
                   "check of the symmetry reduction; cost grows with TP x DP)")


def _add_op(sub) -> None:
    from sim.single_op import OP_KINDS

    p = sub.add_parser("op", help="price and explain a single op (teaching view)")
    p.add_argument("kind", choices=OP_KINDS)
    _add_hw(p)
    p.add_argument("--dtype", default="bf16")
    _add_cost_model(p)
    for name in ("m", "n", "k", "b", "heads", "kv-heads", "seq", "context", "head-dim", "numel",
                 "inputs", "bytes", "ranks"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--flops-per-element", type=float)
    p.add_argument("--no-causal", dest="causal", action="store_false")
    p.add_argument("--algo", choices=("ring", "tree", "nvls"),
                   help="collectives on a system spec: force one algorithm")
    p.add_argument("--json", help="write t_pre_s, t_calc_s, t_post_s, total_s, bound here")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="simulate every TP x PP x DP layout of a trace on a system "
                       "and rank them by tokens/s (capacity planning)")
    p.add_argument("trace", help="one micro-batch of the model (tksim capture)")
    p.add_argument("--system", required=True, help="system spec (tksim specs list)")
    p.add_argument("--nodes", type=int, help="resize the system to N nodes")
    p.add_argument("--global-batch", type=int, required=True,
                   help="sequences per iteration over all data-parallel ranks")
    p.add_argument("--tp", type=_int_list, default=[1, 2, 4, 8], help="TP degrees to try")
    p.add_argument("--pp", type=_int_list, default=[1, 2, 4, 8], help="PP degrees to try")
    p.add_argument("--zero", type=_int_list, default=[0, 1], help="ZeRO stages to try")
    p.add_argument("--recompute", default="both", choices=("no", "yes", "both"))
    p.add_argument("--fuse", action="store_true", help="fused elementwise kernels")
    _add_cost_model(p)
    p.add_argument("--top", type=int, default=10, help="rows to print")
    p.add_argument("--json", help="write every row here")
    p.add_argument("--csv", help="write every row here (CSV)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="simulator speed vs. SimPy's raw event rate")
    p.add_argument("--ops", type=int, default=50_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hw", default="nvidia-h100-sxm5-80gb")
    p.add_argument("--json", help="write the figures here")


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="measure this machine's kernels and fit a calibrated "
                       "spec (CPU); or fit a system's collectives on its nccl-tests results "
                       "(--collectives CSV --system NAME)")
    p.add_argument("--device", default="cpu", choices=("cpu",))
    p.add_argument("--hw", default="amd-epyc-zen5", help="the datasheet spec to calibrate")
    p.add_argument("--threads", type=int, default=1, help="torch threads the spec models")
    p.add_argument("--quick", action="store_true", help="fewer points (about 20 s)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("-o", "--output", help="calibrated spec (default: "
                   "hw_specs/calibrated/<hw>-<threads>t.yaml)")
    p.add_argument("--collectives", metavar="CSV", help="measured collectives of --system "
                   "(columns collective, num_gpus, bytes, time_us[, dtype]): write that system "
                   "with its own collective parameters to -o")
    p.add_argument("--system", help="the system spec the --collectives were measured on")
    p.add_argument("--name", help="name of the calibrated system (default <system>-calibrated)")


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="prediction error against measurements: public GPU "
                       "datasets (--dataset) or this machine's kernels (--hw)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--dataset", help="all, aiconfigurator, vidur, neusight or llmcompass "
                        "(single GPUs); cluster (collectives and parallel training runs)")
    target.add_argument("--hw", action="append", help="a calibrated CPU spec (tksim "
                        "calibrate): re-time held-out kernels and models on this machine; "
                        "repeated: price one such timing with each spec (a paired comparison)")
    p.add_argument("--quick", action="store_true", help="--hw: fewer points (CI); --dataset "
                   "cluster: two of the Megatron-LM runs")
    p.add_argument("--threads", type=int, default=1, help="--hw: torch threads while timing")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--data-dir", help="ground-truth folder (default: $TKSIM_GROUND_TRUTH or "
                   "../shared/ground_truth beside the repository)")
    p.add_argument("--json", help="write the results JSON here")
    p.add_argument("--html", help="write the HTML report here")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="capture a small real Transformer on this CPU and simulate "
                       "it on a GPU and on this CPU (the README's first command)")
    p.add_argument("--model", default="gpt2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--hw", action="append", help="devices (default: h100 and this CPU)")
    p.add_argument("--out", default="tksim-demo", help="output directory")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from sim import commands

        return commands.run(args)
    except InputError as exc:
        print(f"tksim: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tksim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
