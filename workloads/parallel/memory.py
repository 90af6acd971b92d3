"""Memory of one pipeline stage's representative rank, in bytes.

Legend: t tensor-parallel degree, e expert-parallel degree, b batch, s_k keys held, a_kv key/value
heads, d head size, Psi parameters of the rank.

- ``weights``: the rank's parameters (tensor-parallel shards already cut, experts / e) at the
  model dtype. Training traces list every parameter in their optimizer ops (the largest tensor an
  optimizer op of the parameter touches); inference traces are read from the forward ops: GEMM
  weights (k * n, plus a bias), embedding tables, 1-D norm weights.
- ``gradients``: one per parameter at the model dtype (training only).
- ``optimizer``: AdamW, per ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054, sec. 3.1): 12 bytes
  per parameter with a 16-bit model (fp32 master copy, momentum, variance), 8 with an fp32 model
  (the two fp32 moments).
- ``activations``: the forward outputs this stage's backward reads (saved for backward), one
  micro-batch; a view counts as the tensor it views, each tensor once.
- ``kv_cache``: inference traces: 2 * b * s_k * a_kv * d * dtype bytes per attention op (a_kv
  already divided by t).
"""

from __future__ import annotations

from collections.abc import Sequence

from sim.trace import Op
from sim.units import DTYPE_BYTES
from workloads.parallel.roles import block_of

__all__ = ["stage_memory", "forward_params", "OPTIMIZER_BYTES_PER_PARAM"]

#: AdamW state per parameter (ZeRO, Rajbhandari et al. 2020, sec. 3.1): model dtype bits -> bytes
OPTIMIZER_BYTES_PER_PARAM = {16: 12, 32: 8}


def stage_memory(forward: Sequence[Op], backward: Sequence[Op], step: Sequence[Op], *,
                 dtype: str, ep: int = 1, tied_module: str = "") -> dict[str, float]:
    """``weights``, ``gradients``, ``optimizer``, ``activations``, ``kv_cache`` (bytes/rank).

    ``tied_module``: an inference trace's LM head whose weight is the embedding table (GPT-2,
    BERT), not counted twice."""
    width = DTYPE_BYTES[dtype]
    train = bool(backward)
    params = _trained_params(step, ep) if step else forward_params(forward, tied_module)
    optimizer = OPTIMIZER_BYTES_PER_PARAM[16 if width <= 2 else 32]
    return {
        "weights": params * width,
        "gradients": params * width if train else 0.0,
        "optimizer": params * optimizer if train else 0.0,
        "activations": _saved_bytes(forward, backward),
        "kv_cache": 0.0 if train else _kv_cache_bytes(forward),
    }


def _trained_params(step: Sequence[Op], ep: int) -> float:
    numel: dict[str, int] = {}
    for op in step:
        name = op.attrs.get("param")
        if not name:
            continue
        largest = max((x.numel for x in (*op.inputs, *op.outputs)), default=0)
        numel[name] = max(numel.get(name, 0), largest)
    return float(sum(n / ep if ".experts" in name else n for name, n in numel.items()))


def forward_params(forward: Sequence[Op], tied_module: str = "") -> float:
    """Parameters read by forward ops (see the module doc)."""
    total = 0.0
    norms: dict[str, int] = {}
    for op in forward:
        found = block_of(op.module)
        if op.module and op.module == tied_module:  # the embedding's table; only a bias is new
            if op.category == "gemm":
                total += sum(x.numel for x in op.inputs if len(x.shape) == 1)
            continue
        if op.category == "gemm" and op.module and int(op.attrs.get("b", 1)) == 1 and (
                found is None or found[0] != op.module):  # a linear, not attention's bmm
            bias = sum(x.numel for x in op.inputs if len(x.shape) == 1)
            total += int(op.attrs["k"]) * int(op.attrs["n"]) + bias
        elif op.category == "embedding" and op.inputs and not op.attrs.get("backward"):
            total += op.inputs[0].numel
        elif _is_norm(op.module):
            vectors = sum(x.numel for x in op.inputs if len(x.shape) == 1)
            norms[op.module] = max(norms.get(op.module, 0), vectors)
    return total + sum(norms.values())


def _is_norm(module: str) -> bool:
    last = module.rsplit(".", 1)[-1].lower()
    return "norm" in last or last.startswith("ln")


def _saved_bytes(forward: Sequence[Op], backward: Sequence[Op]) -> float:
    by_id = {op.id: op for op in forward}
    saved: set[int] = set()
    for op in backward:
        for dep in op.deps:
            base = by_id.get(dep)
            while base is not None and base.category == "view" and base.deps \
                    and base.deps[0] in by_id:
                base = by_id[base.deps[0]]
            if base is not None:
                saved.add(base.id)
    return float(sum(x.nbytes for i in saved for x in by_id[i].outputs))


def _kv_cache_bytes(forward: Sequence[Op]) -> float:
    total = 0.0
    for op in forward:
        if op.category == "attention" and "h_kv" in op.attrs:
            a = op.attrs
            total += 2 * a["b"] * a["s_k"] * a["h_kv"] * a["d"] * DTYPE_BYTES[op.dtype]
    return float(total)
