"""Many-device validation: predicted collectives and parallel training runs vs measurements.

Four comparisons, none fitted on (every parameter of the collective and kernel models was fitted
on A100 single-GPU and 8-GPU NCCL rows of AIConfigurator; see docs/gpu-validation.md):

1. **NCCL on 8 GPUs**, messages >= 1 MiB, every single-node 8-GPU measurement of the ground
   truth: AIConfigurator ``*_nccl.csv`` (nccl-tests, NCCL 2.27-2.29, four collectives), Vidur
   ``network/*_dgx/all_reduce.csv`` (NCCL kernel time) and the Azure guide's all-reduce bus
   bandwidth (NCCL 2.18-2.20), each over all 8 GPUs of a DGX node spec. AIConfigurator's A100
   rows are the fit's own data (reported, marked); everything else is held out. The L40S node
   is left out: its measured bus bandwidth (1.5-2 GB/s on 8 GPUs, 20 GB/s on 2) says its GPUs
   talk through host memory on that machine, which a PCIe spec alone cannot tell.
2. **NeuSight 4-GPU GPT-2-Large training** (``neusight/e2e_latency.csv``, variants dp4 / tp4 /
   pp4_1: Megatron-LM through HF Accelerate, fp32, seq 1024, ``batch`` = global batch): the
   model captured on fake tensors, split by the parallel transforms, simulated on 4 GPUs of a
   DGX node (H100 SXM; A100 SXM4 40GB). ``pp4_1`` is read as 4 stages and 1 micro-batch.
3. **Tensor-parallel serving** (:mod:`validation.serving_validation`): TensorRT-LLM batch latency
   on 1, 2 and 4 A100s (LLM-Inference-Bench).
4. **Megatron-LM throughput** (``validation/data/megatron_sc21_table1.csv``, Narayanan et al.
   SC'21 Table 1): GPT models on DGX A100 SuperPOD nodes, TP/PP/DP as published, full
   recomputation, 1F1B; predicted TFLOP/s per GPU by the paper's eq. (3) vs the published figure.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
import pandas as pd

from sim.cluster.comm import collective_plan
from sim.cluster.simulate import simulate_parallel
from sim.cluster.system import load_system
from sim.cluster.workload import ParallelPlan
from sim.cost.gpu_params import A100_FIT
from sim.fusion import fuse_elementwise

__all__ = ["nccl_errors", "nccl_system_calibrated", "neusight_parallel", "megatron_throughput",
           "run_cluster_validation", "cluster_results_markdown", "MEGATRON_TABLE", "TARGETS"]

MEGATRON_TABLE = Path(__file__).resolve().parent / "data" / "megatron_sc21_table1.csv"
_NCCL_SYSTEMS = {"a100_sxm": "dgx-a100", "h100_sxm": "dgx-h100", "h200_sxm": "dgx-h200",
                 "b200_sxm": "dgx-b200"}
_NCCL_DTYPES = {"half": "fp16", "int8": "int8"}  # nccl-tests -d names in the AIConfigurator table
_NCCL_KINDS = {"all_reduce": "allreduce", "all_gather": "allgather",
               "reduce_scatter": "reducescatter", "alltoall": "alltoall"}
_NEUSIGHT_SYSTEMS = {"NVIDIA_H100_80GB_HBM3": "dgx-h100", "NVIDIA_A100-SXM4-40GB": "dgx-a100-40gb"}
A100_PEAK = 312e12  # A100 dense FP16/BF16 tensor-core peak (A100 datasheet), Megatron's 100%


_AZURE_SYSTEMS = {"NVIDIA A100-SXM4-80GB": "dgx-a100", "NVIDIA H100 80GB HBM3": "dgx-h100",
                  "NVIDIA H200 141GB": "dgx-h200"}
_VIDUR_SYSTEMS = {"a100_dgx": "dgx-a100", "h100_dgx": "dgx-h100"}


def nccl_errors(root: Path, min_bytes: float = 2**20) -> pd.DataFrame:
    """One row per (source, system, collective, message size) with predicted and measured
    seconds: every 8-GPU, single-node NCCL measurement of the ground truth (AIConfigurator's
    four collectives, Vidur's and Azure's all-reduce)."""
    rows = _aiconfigurator_nccl(root, min_bytes)
    rows += _vidur_nccl(root, min_bytes)
    rows += _azure_nccl(root, min_bytes)
    return pd.DataFrame(rows)


def _nccl_row(source: str, system, kind: str, size: float, measured_s: float,
              fit_data: bool, dtype: str | None = None) -> dict:
    plan = collective_plan(system, kind, size, tuple(range(8)), A100_FIT, dtype=dtype)
    return {"source": source, "system": system.name, "collective": kind, "dtype": dtype or "",
            "bytes": size,
            "algorithm": plan.algorithm, "predicted_s": plan.alone_s, "measured_s": measured_s,
            "fit_data": fit_data}


def _vidur_nccl(root: Path, min_bytes: float) -> list[dict]:
    """Vidur ``network/*_dgx/all_reduce.csv``: NCCL kernel time (median), 8 GPUs of a node."""
    rows = []
    for folder, name in _VIDUR_SYSTEMS.items():
        path = root / "vidur" / "network" / folder / "all_reduce.csv"
        if not path.is_file():
            continue
        system = load_system(name)
        df = pd.read_csv(path)
        df = df[(df["num_workers"] == 8) & (df["devices_per_node"] == 8)
                & (df["size"] >= min_bytes)]
        rows += [_nccl_row("vidur", system, "allreduce", float(size), ms * 1e-3, False, "fp16")
                 for size, ms in zip(df["size"], df["time_stats.all_reduce.median"],
                                     strict=True)]
    return rows


def _azure_nccl(root: Path, min_bytes: float) -> list[dict]:
    """Azure AI benchmarking guide: nccl-tests all-reduce bus bandwidth on 8 GPUs of a VM,
    turned into seconds (t = 2 (n - 1) / n S / busbw)."""
    path = root / "azure_ai_benchmarking_guide" / "nccl_allreduce_busbw_8gpu.csv"
    if not path.is_file():
        return []
    df = pd.read_csv(path)
    df = df[df["size_bytes_inferred"] >= min_bytes]
    rows = []
    for device, size, busbw in zip(df["device"], df["size_bytes_inferred"], df["busbw_GBps"],
                                   strict=True):
        if device in _AZURE_SYSTEMS:
            seconds = 2 * 7 / 8 * size / (busbw * 1e9)
            rows.append(_nccl_row("azure", load_system(_AZURE_SYSTEMS[device]), "allreduce",
                                  float(size), seconds, False))
    return rows


def _aiconfigurator_nccl(root: Path, min_bytes: float) -> list[dict]:
    rows = []
    for prefix, name in _NCCL_SYSTEMS.items():
        path = root / "aiconfigurator" / f"{prefix}_nccl.csv"
        if not path.is_file():
            continue
        system = load_system(name)
        df = pd.read_csv(path)
        df = df[(df["num_gpus"] == 8) & (df["message_bytes"] >= min_bytes)
                & df["op_name"].isin(list(_NCCL_KINDS))]
        rows += [_nccl_row("aiconfigurator", system, _NCCL_KINDS[op], float(size), ms * 1e-3,
                           prefix == "a100_sxm", _NCCL_DTYPES[dtype])
                 for op, dtype, size, ms in zip(df["op_name"], df["nccl_dtype"],
                                                df["message_bytes"], df["latency_ms"], strict=True)]
    return rows


def nccl_system_calibrated(root: Path, min_bytes: float = 2**20) -> pd.DataFrame:
    """The 8-GPU NCCL rows of :func:`nccl_errors` predicted with the node's collectives
    calibrated on the same stack's 2- and 4-GPU runs (:mod:`validation.collective_calibrate`):
    what a user who ran nccl-tests on part of a node gets for the whole node. AIConfigurator's
    rows use its own 2/4-GPU runs (four collectives, every size, both dtypes), Vidur's its own
    single-node 2/4-GPU all-reduces (every 8th size); Azure ran 8 GPUs only, so its rows get the
    AIConfigurator calibration of the same node type (``calibrated_on`` says so: another
    machine and NCCL version, reported but not a same-stack result)."""
    from validation.collective_calibrate import fit_collectives, predict_rows, without_nvls

    fitted = {}
    for prefix, name in _NCCL_SYSTEMS.items():
        path = root / "aiconfigurator" / f"{prefix}_nccl.csv"
        if path.is_file():
            df = pd.read_csv(path)
            df = df[(df["num_gpus"] < 8) & df["op_name"].isin(list(_NCCL_KINDS))]
            fitted[("aiconfigurator", name)] = fit_collectives(load_system(name), pd.DataFrame({
                "kind": df["op_name"].map(_NCCL_KINDS), "num_gpus": df["num_gpus"],
                "bytes": df["message_bytes"], "seconds": df["latency_ms"] * 1e-3,
                "dtype": df["nccl_dtype"].map(_NCCL_DTYPES)}))
    for folder, name in _VIDUR_SYSTEMS.items():
        path = root / "vidur" / "network" / folder / "all_reduce.csv"
        if path.is_file():
            df = pd.read_csv(path)
            df = df[(df["num_workers"] < 8) & (df["num_workers"] == df["devices_per_node"])]
            df = df.sort_values(["num_workers", "size"]).iloc[::8]
            fitted[("vidur", name)] = fit_collectives(load_system(name), pd.DataFrame({
                "kind": "allreduce", "num_gpus": df["num_workers"], "bytes": df["size"],
                "seconds": df["time_stats.all_reduce.median"] * 1e-3, "dtype": "fp16"}))
    errors = nccl_errors(root, min_bytes)
    on = [(src, sys_) if (src, sys_) in fitted else ("aiconfigurator", sys_)
          for src, sys_ in zip(errors["source"], errors["system"], strict=True)]
    keep = np.array([key in fitted for key in on])
    errors = errors[keep].reset_index(drop=True)
    on = [key for key, k in zip(on, keep, strict=True) if k]
    predicted = np.empty(len(errors))
    for key in set(on):
        index = np.flatnonzero([k == key for k in on])
        group = errors.iloc[index]
        rows = pd.DataFrame({"kind": group["collective"].to_numpy(), "num_gpus": 8,
                             "bytes": group["bytes"].to_numpy(),
                             "dtype": group["dtype"].replace("", None).to_numpy()})
        params = dict(fitted[key])
        system = load_system(key[1]) if params.pop("nvls") else without_nvls(load_system(key[1]))
        predicted[index] = predict_rows(system, rows, A100_FIT.replace(**params))
    same = [src == key[0] for src, key in zip(errors["source"], on, strict=True)]
    return errors.assign(predicted_s=predicted, fit_data=False, same_stack=same,
                         calibrated_on=[f"{k[0]} {k[1]} 2/4 GPUs" for k in on],
                         calibration=[", ".join(f"{p} {v:.3g}" for p, v in fitted[k].items())
                                      for k in on])


@functools.lru_cache(maxsize=16)
def _gpt_trace(model: str, batch: int, seq: int, dtype: str, hf: tuple | None = None):
    from workloads import capture_model

    if hf is None:
        return capture_model(model, phase="train", batch=batch, seq=seq, dtype=dtype,
                             mode="fake")
    return capture_model(hf_config=_gpt_config_file(*hf), phase="train", batch=batch, seq=seq,
                         dtype=dtype, mode="fake")


def neusight_parallel(root: Path) -> pd.DataFrame:
    """Predicted vs measured iteration time of NeuSight's 4-GPU GPT-2-Large runs."""
    path = root / "neusight" / "e2e_latency.csv"
    df = pd.read_csv(path)
    df = df[(df["model"] == "gpt2_large") & df["variant"].isin(["dp4", "tp4", "pp4_1"])
            & df["device"].isin(list(_NEUSIGHT_SYSTEMS))]
    rows = []
    for device, variant, batch, seq, ms in zip(df["device"], df["variant"], df["batch"],
                                               df["seq_len"], df["e2e_latency_ms"], strict=True):
        plan, micro = _neusight_plan(variant, int(batch))
        trace = _gpt_trace("gpt2-large", micro, int(seq), "fp32")
        system = load_system(_NEUSIGHT_SYSTEMS[device])
        from workloads.parallel import parallelize

        result = simulate_parallel(parallelize(trace, plan), system, records=False)
        rows.append({"device": device, "variant": variant, "batch": int(batch),
                     "predicted_s": result.total_s, "measured_s": ms * 1e-3,
                     "system": system.name})
    return pd.DataFrame(rows)


def _neusight_plan(variant: str, batch: int) -> tuple[ParallelPlan, int]:
    if variant == "dp4":
        return ParallelPlan(dp=4), batch // 4
    if variant == "tp4":
        return ParallelPlan(tp=4), batch
    return ParallelPlan(pp=4, microbatches=1), batch


def megatron_throughput(rows: list[int] | None = None, microbatch: int = 1) -> pd.DataFrame:
    """Predicted vs published TFLOP/s per GPU for rows of Megatron-LM's Table 1 (module doc)."""
    from workloads.parallel import parallelize

    table = _read_table(MEGATRON_TABLE)
    pod = load_system("dgx-a100-superpod")
    out = []
    for i, row in enumerate(table):
        if rows is not None and i not in rows:
            continue
        tp, pp, gpus, batch = (int(row[k]) for k in ("tp", "pp", "gpus", "batch"))
        dp = gpus // (tp * pp)
        h, L, a = int(row["hidden"]), int(row["layers"]), int(row["heads"])
        s, V = 2048, 51200
        # Megatron's fused kernels (SC'21 sec. 4.2): scale-mask-softmax, bias-GeLU,
        # bias-dropout-add run as single kernels
        trace = fuse_elementwise(_gpt_trace("gpt", microbatch, s, "fp16", (h, L, a, V, s)))
        plan = ParallelPlan(tp=tp, pp=pp, dp=dp, microbatches=batch // (dp * microbatch),
                            recompute=True)
        system = pod.with_domains(max(1, gpus // pod.gpus_per_domain))
        result = simulate_parallel(parallelize(trace, plan), system, records=False)
        flops = 96 * batch * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))  # eq. (3)
        out.append({"params_billion": float(row["params_billion"]), "tp": tp, "pp": pp,
                    "dp": dp, "gpus": gpus, "batch": batch, "microbatches": plan.microbatches,
                    "predicted_tflops_per_gpu": flops / (result.total_s * gpus) / 1e12,
                    "published_tflops_per_gpu": float(row["tflops_per_gpu"]),
                    "predicted_iteration_s": result.total_s, "mfu": result.mfu,
                    "hfu": result.hfu})
    return pd.DataFrame(out)


def _read_table(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


@functools.lru_cache(maxsize=16)
def _gpt_config_file(h: int, L: int, a: int, V: int, s: int) -> str:
    """A GPT-2-architecture config.json with Megatron's GPT shape (written once per shape)."""
    import json
    import tempfile

    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": h,
              "n_layer": L, "n_head": a, "n_positions": s, "vocab_size": V,
              # Megatron's GPT (SC'21): GeLU as one fused bias-GeLU kernel, i.e. torch's gelu
              # (not HF's "gelu_new": seven elementwise ops); attention unfused: QK^T and PV
              # batched GEMMs around a fused scale-mask-softmax, with dropout 0.1, as HF's eager
              # attention records it (FlashAttention came to Megatron-LM later)
              "n_inner": 4 * h, "activation_function": "gelu",
              "attn_implementation": "eager", "attn_pdrop": 0.1}
    path = Path(tempfile.mkdtemp(prefix="tksim-gpt-")) / f"gpt-{h}-{L}-{a}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def summary(errors: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Median / p90 APE and median bias per group of ``key``."""
    e = errors.assign(ape=lambda d: (d.predicted_s - d.measured_s).abs() / d.measured_s,
                      bias=lambda d: d.predicted_s / d.measured_s - 1)
    return e.groupby(key).agg(n=("ape", "size"), median_ape=("ape", "median"),
                              p90_ape=("ape", lambda x: float(np.quantile(x, 0.9))),
                              median_bias=("bias", "median")).reset_index()


#: Targets of the many-devices work (median APE over the rows named).
TARGETS = {"nccl_8gpu": 0.10, "neusight_4gpu": 0.10, "megatron_throughput": 0.10,
           "serving_tp": 0.10}  # no target was set for serving; the same 10 % as the others


def run_cluster_validation(data_dir: str | Path | None = None, *,
                           megatron_rows: list[int] | None = None, quick: bool = False) -> dict:
    """All comparisons (module doc, and :mod:`validation.serving_validation`) as a JSON-ready
    dict with per-group summaries and target verdicts. ``megatron_rows``: the Table 1 rows to
    simulate (default 0-6, up to 145.6B on 1536 GPUs); ``quick``: the serving rows of
    Llama-2-7B up to batch 16 and 256 tokens only."""
    import time

    from validation.datasets.common import ground_truth_dir
    from validation.serving_validation import tp_inference

    start = time.perf_counter()
    root = ground_truth_dir(data_dir)
    nccl = nccl_errors(root)
    calibrated = nccl_system_calibrated(root)
    neusight = neusight_parallel(root)
    megatron = megatron_throughput(list(range(7)) if megatron_rows is None else megatron_rows)
    megatron = megatron.assign(predicted_s=1 / megatron.predicted_tflops_per_gpu,
                               measured_s=1 / megatron.published_tflops_per_gpu)
    serving = tp_inference(root, models=["llama-2-7b"] if quick else None,
                           max_batch=16 if quick else None, max_length=256 if quick else None)
    served = serving[serving["excluded"] == ""]
    held = nccl[~nccl.fit_data]
    targets = [
        *({"target": "NCCL collectives, 8 GPUs, >= 1 MiB", "group": f"{source} {system}",
           "value": float(s.median_ape), "bound": TARGETS["nccl_8gpu"],
           "met": bool(s.median_ape <= TARGETS["nccl_8gpu"])}
          for (source, system), s in summary(held, ["source", "system"]).set_index(
              ["source", "system"]).iterrows()),
        *({"target": "NCCL collectives, 8 GPUs, >= 1 MiB, node calibrated on the same "
                     "stack's 2/4-GPU runs", "group": f"{source} {system}",
           "value": float(s.median_ape), "bound": TARGETS["nccl_8gpu"],
           "met": bool(s.median_ape <= TARGETS["nccl_8gpu"])}
          for (source, system), s in summary(calibrated[calibrated.same_stack],
                                             ["source", "system"]).set_index(
              ["source", "system"]).iterrows()),
        _target("NeuSight 4-GPU GPT-2-Large dp4/tp4/pp4", neusight, "neusight_4gpu"),
        _target("Megatron-LM SC'21 TFLOP/s per GPU", megatron, "megatron_throughput"),
        _target("TensorRT-LLM TP1/2/4 batch latency (LLM-Inference-Bench)", served,
                "serving_tp"),
    ]
    return {
        "targets": targets,
        "nccl": _records(summary(nccl, ["source", "system", "fit_data", "collective"])),
        "neusight": _records(neusight.assign(error=neusight.predicted_s / neusight.measured_s - 1)),
        "megatron": _records(megatron.drop(columns=["predicted_s", "measured_s"]).assign(
            error=megatron.predicted_tflops_per_gpu / megatron.published_tflops_per_gpu - 1)),
        "serving": _records(serving.assign(error=serving.predicted_s / serving.measured_s - 1)),
        "nccl_points": _records(nccl),
        "nccl_calibrated": _records(summary(calibrated, ["source", "system", "calibrated_on",
                                                         "collective"])),
        "nccl_calibrated_points": _records(calibrated),
        "protocol": "no parameter fitted on these rows: kernel and collective parameters are the "
                    "A100 single-GPU and 8-GPU NCCL fit (A100 NCCL rows marked fit_data); "
                    "nccl_calibrated: each node's collective parameters fitted on the same "
                    "source's 2- and 4-GPU runs (AIConfigurator, Vidur), its 8-GPU runs held "
                    "out; Azure (8 GPUs only) gets the AIConfigurator calibration",
        "runtime_s": time.perf_counter() - start,
    }


def _target(name: str, rows: pd.DataFrame, key: str) -> dict:
    ape = ((rows.predicted_s - rows.measured_s).abs() / rows.measured_s).median()
    return {"target": name, "group": "all", "value": float(ape), "bound": TARGETS[key],
            "met": bool(ape <= TARGETS[key])}


def _records(df: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: numpy scalars as Python numbers, NaN (not predicted) as None."""
    def clean(v):
        v = v.item() if hasattr(v, "item") else v
        return None if isinstance(v, float) and v != v else v
    return [{k: clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def cluster_results_markdown(results: dict) -> str:
    """Targets, NCCL per system and collective, NeuSight rows and Megatron rows as Markdown."""
    pct = lambda v: f"{100 * v:+.1f}%"  # noqa: E731
    lines = ["| target | group | median APE | bound | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['group']} | {100 * t['value']:.1f}% | "
              f"{100 * t['bound']:.0f}% | {'met' if t['met'] else 'NOT met'} |"
              for t in results["targets"]]
    lines += ["", "| source | system | collective | n | median APE | p90 | bias | split |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['system']} | {r['collective']} | {r['n']} | "
              f"{100 * r['median_ape']:.1f}% | "
              f"{100 * r['p90_ape']:.1f}% | {pct(r['median_bias'])} | "
              f"{'fit (A100)' if r['fit_data'] else 'held out'} |" for r in results["nccl"]]
    lines += ["", "| node calibrated: source | system | calibrated on | collective | n | "
              "median APE | p90 | bias |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['system']} | {r['calibrated_on']} | {r['collective']} | "
              f"{r['n']} | {100 * r['median_ape']:.1f}% | {100 * r['p90_ape']:.1f}% | "
              f"{pct(r['median_bias'])} |" for r in results.get("nccl_calibrated", [])]
    lines += ["", "| NeuSight device | variant | global batch | predicted | measured | error |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['variant']} | {r['batch']} | "
              f"{1e3 * r['predicted_s']:.0f} ms | {1e3 * r['measured_s']:.0f} ms | "
              f"{pct(r['error'])} |" for r in results["neusight"]]
    served = [r for r in results.get("serving", []) if not r["excluded"]]
    lines += ["", "| TensorRT-LLM model | TP | rows | median APE | bias | excluded (do not fit) |",
              "|---|---|---|---|---|---|"]
    for key in sorted({(r["model"], r["tp"]) for r in results.get("serving", [])}):
        mine = [r for r in served if (r["model"], r["tp"]) == key]
        gone = sum(1 for r in results["serving"] if (r["model"], r["tp"]) == key
                   and r["excluded"])
        errors = sorted(r["error"] for r in mine)
        if errors:
            lines.append(f"| {key[0]} | {key[1]} | {len(mine)} | "
                         f"{100 * _median([abs(e) for e in errors]):.1f}% | "
                         f"{pct(_median(errors))} | {gone} |")
        else:
            lines.append(f"| {key[0]} | {key[1]} | 0 | | | {gone} |")
    lines += ["", "| Megatron params | TP x PP x DP | micro-batches | predicted TFLOP/s/GPU | "
              "published | error | MFU | HFU |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['params_billion']}B | {r['tp']}x{r['pp']}x{r['dp']} | {r['microbatches']} | "
              f"{r['predicted_tflops_per_gpu']:.0f} | {r['published_tflops_per_gpu']:.0f} | "
              f"{pct(r['error'])} | {100 * r['mfu']:.1f}% | {100 * r['hfu']:.1f}% |"
              for r in results["megatron"]]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")
