"""A hand-built five-op simulation result shared by the report tests (times in us).

One host, compute stream 0, communication stream 1. The critical path is embed (t_pre 2 + 5) ->
q_proj (10) -> act (3) -> down (10): T = 30 us, of which t_pre 2 (6.7%), t_calc 25.5 (85.0%) and
t_post 2.5 (8.3%); the all-reduce on stream 1 (17..27) overlaps layer 1.
"""

from __future__ import annotations

import pandas as pd

from sim.result import COLUMNS, SimResult

US = 1e-6
# name, category, module, layer, stream, host_start, issue, start, end, t_pre, t_calc, t_post (us)
OPS = [
    ("aten::embedding", "embedding", "model.embed_tokens", -1, 0, 0, 2, 2, 7, 2, 4, 1),
    ("aten::mm", "gemm", "model.layers.0.attn.q_proj", 0, 0, 2, 4, 7, 17, 2, 9, 1),
    ("nccl:all_reduce", "collective", "model.layers.0.attn", 0, 1, 4, 5, 17, 27, 1, 10, 0),
    ("aten::silu", "elementwise", "model.layers.1.mlp.act", 1, 0, 5, 6, 17, 20, 1, 3, 0),
    ("aten::mm", "gemm", "model.layers.1.mlp.down_proj", 1, 0, 6, 8, 20, 30, 2, 9.5, 0.5),
]
CRIT = [(2, 4, 1), (0, 9, 1), (0, 0, 0), (0, 3, 0), (0, 9.5, 0.5)]  # crit_pre/calc/post (us)


def tiny_result(hw: str = "toy-gpu") -> SimResult:
    """The five-op scenario above, simulated on a device named ``hw``."""
    rows = []
    for k, (op, crit) in enumerate(zip(OPS, CRIT, strict=True)):
        name, cat, module, layer, stream, hs, iss, st, en, pre, calc, post = op
        rows.append({
            "id": k, "name": name, "category": cat, "module": module, "phase": "forward",
            "layer": layer, "stream": stream, "rank": 0, "host_start_s": hs * US,
            "issue_s": iss * US, "start_s": st * US, "end_s": en * US, "t_pre_s": pre * US,
            "t_calc_s": calc * US, "t_post_s": post * US, "t_s": (pre + calc + post) * US,
            "bound": "compute" if cat == "gemm" else "memory", "flops": 2e9 if cat == "gemm" else 0,
            "bytes": 4e6, "waited_for": "host" if k == 0 else "stream", "critical": any(crit),
            "crit_pre_s": crit[0] * US, "crit_calc_s": crit[1] * US, "crit_post_s": crit[2] * US,
        })
    ops = pd.DataFrame(rows, columns=list(COLUMNS))
    return SimResult(ops=ops, total_s=30 * US, hw=hw, hw_kind="gpu",
                     trace_meta={"name": "toy", "batch": 1}, peak_flops_per_s=1e15,
                     peak_bytes_per_s=3e12)
