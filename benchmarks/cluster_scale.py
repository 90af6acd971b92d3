"""Benchmark: how fast the cluster simulator is, and how its cost grows with the GPU count.

    python benchmarks/cluster_scale.py            # the issue's targets (about 2-4 minutes)
    python benchmarks/cluster_scale.py --quick    # smaller models, seconds

Prints, for each case, the simulation's wall time (median of ``--repeats`` runs), the op
instances simulated and the process's peak RSS; cases:

1. Llama-2-70B training step, TP8 x PP8 x DP16 = 1024 GPUs (128 DGX H100 nodes), 64 micro-batches
   of b=1, s=4096, 1F1B, full recomputation (target: <= 60 s, <= 2 GB RSS);
2. the same at DP 1, 2, 4, 8 (64-512 GPUs): the symmetry reduction keeps the cost flat in DP;
3. an 8-GPU inference step: Llama-2-70B decode, TP8 on one DGX H100, 32 sequences with 2048
   tokens of context (target: <= 1 s).

Traces are captured on fake tensors first (not timed here; see benchmarks/capture_70b.py).
Torch threads are pinned to 1.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _capture(model: str, phase: str, **kw):
    import torch

    from workloads import capture_model

    torch.set_num_threads(1)
    return capture_model(model, phase=phase, mode="fake", dtype="bf16", progress=False, **kw)


def _time(trace, system, plan, repeats: int):
    from sim.cluster.simulate import simulate_parallel
    from workloads.parallel import parallelize

    walls, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        workload = parallelize(trace, plan)
        result = simulate_parallel(workload, system, records=False)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), result


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Llama-2-7B, fewer micro-batches")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from sim.cluster.system import load_system
    from sim.cluster.workload import ParallelPlan

    model, microbatches = ("llama-2-7b", 8) if args.quick else ("llama-2-70b", 64)
    t0 = time.perf_counter()
    train = _capture(model, "train", batch=1, seq=4096)
    print(f"captured {model} train micro-batch: {len(train.ops):,} ops in "
          f"{time.perf_counter() - t0:.1f} s")
    pod = load_system("dgx-h100-superpod")
    print(f"\n{'GPUs':>5} {'TPxPPxDP':>10} {'instances':>10} {'sim s':>7} {'T (s)':>8} "
          f"{'MFU':>6} {'RSS GiB':>8}")
    for dp in (1, 2, 4, 8, 16):
        plan = ParallelPlan(tp=8, pp=8, dp=dp, microbatches=microbatches, recompute=True)
        system = pod.with_domains(plan.world // 8)
        wall, r = _time(train, system, plan, args.repeats)
        print(f"{plan.world:>5} {'8x8x' + str(dp):>10} {r.num_instances:>10,} {wall:>7.2f} "
              f"{r.total_s:>8.3f} {r.mfu:>6.1%} {_rss_gib():>8.2f}")
    decode = _capture(model, "decode", batch=32, context=2048)
    node = load_system("dgx-h100")
    wall, r = _time(decode, node, ParallelPlan(tp=8), max(3, args.repeats))
    print(f"\n8-GPU inference step ({model} decode, TP8, b=32, context 2048): simulated in "
          f"{wall:.3f} s (median of {max(3, args.repeats)}; target <= 1 s), T = "
          f"{r.total_s * 1e3:.2f} ms, {r.num_instances:,} op instances")
    print(f"peak RSS of this process: {_rss_gib():.2f} GiB (target <= 2 GB)")


if __name__ == "__main__":
    main()
