"""Shape sweeps of Transformer ops, one family of :class:`~validation.microbench.cases.Case` each.

Shapes are drawn log-uniformly from a seeded generator over the ranges Transformer work on a CPU
spans (GEMM m from 1 -- decode -- to 2048 tokens, n and k from 32 to 8192; 64 to 16 M elements
for memory-bound ops), half of them rounded to multiples of 64 as model widths are, half left
odd so that tile edges are exercised. No shape is taken from a model the validation holds out.

:func:`build_cases` returns every family's cases; every third point drawn for a (family,
dtype) sweep is tagged ``heldout``, the others ``fit``. The draws are independent, so held-out
shapes span the same ranges as the fitted ones; they are never used in a fit. A quick sweep
draws the first third of a full sweep's points from the same generator (same shapes, splits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from validation.microbench.cases import Case

__all__ = ["FAMILIES", "build_cases", "HELDOUT_EVERY"]

HELDOUT_EVERY = 3  # every third point drawn for a sweep is held out
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_MAX_GEMM_FLOPS = 1.2e9  # ~10 ms at fp32 on one core: keeps a full sweep within minutes
#: Largest tensor (elements): 32 MiB of fp32. Whether a larger output faults its pages in
#: (glibc serves it by mmap) or reuses heap memory depends on the allocator's history, not on
#: the op; the sweep stays below glibc's 32 MiB mmap threshold so that no point depends on it.
_MAX_ELEMENTS = 1 << 23
_MAX_WEIGHT_ELEMENTS = 1 << 23
#: An LM head's weight (elements: 256 MiB of fp32) and work (~40 ms at fp32 on one core).
_MAX_LM_HEAD_WEIGHT_ELEMENTS = 1 << 26
_MAX_LM_HEAD_FLOPS = 4e9


def _log_int(rng: np.random.Generator, low: int, high: int, round_to: int = 1) -> int:
    value = int(round(float(np.exp(rng.uniform(np.log(low), np.log(high))))))
    if round_to > 1:
        value = max(round_to, round_to * round(value / round_to))
    return max(low, min(high, value))


def _randn(gen: torch.Generator, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    return torch.randn(shape, generator=gen).to(_DTYPES[dtype])


def _gemm_shape(rng: np.random.Generator, m_high: int = 2048,
               p_vector: float = 0.2) -> tuple[int, int, int]:
    """(m, n, k); m = 1 (decoding one token: a matrix-vector product) with ``p_vector``."""
    while True:
        rounded = rng.random() < 0.5
        step = 64 if rounded else 1
        m = _log_int(rng, 1, m_high, 8 if rounded and rng.random() < 0.5 else 1)
        m = 1 if rng.random() < p_vector else m
        n, k = _log_int(rng, 32, 8192, step), _log_int(rng, 32, 8192, step)
        if (2 * m * n * k <= _MAX_GEMM_FLOPS and n * k <= _MAX_WEIGHT_ELEMENTS
                and m * max(n, k) <= _MAX_ELEMENTS):
            return m, n, k


def linear_cases(rng, count: int, dtype: str, *, bias: bool, cold: bool = False) -> list[Case]:
    """F.linear on a (1, m, k) input, as a model's projection: views + addmm (or mm)."""
    cases = []
    for _ in range(count):
        m, n, k = _gemm_shape(rng, m_high=64 if cold else 2048, p_vector=0.4 if cold else 0.2)

        def make(gen, m=m, n=n, k=k):
            t = {"x": _randn(gen, (1, m, k), dtype), "w": _randn(gen, (n, k), dtype) * k**-0.5}
            if bias:
                t["b"] = _randn(gen, (n,), dtype)
            return t

        run = (lambda x, w, b: F.linear(x, w, b)) if bias else (lambda x, w: F.linear(x, w))
        cases.append(Case("linear" if bias else "linear_nobias", "gemm", dtype,
                          {"m": m, "n": n, "k": k}, make, run, weights=("w",), cold=cold))
    return cases


def conv1d_cases(rng, count: int, dtype: str, *, cold: bool = False) -> list[Case]:
    """GPT-2's ``Conv1D`` on a (1, m, k) input: addmm with its weight stored k x n (``x @ w``;
    F.linear's weight is n x k, a different BLAS kernel), then a view."""
    cases = []
    for _ in range(count):
        m, n, k = _gemm_shape(rng, m_high=64 if cold else 2048, p_vector=0.4 if cold else 0.2)

        def make(gen, m=m, n=n, k=k):
            return {"x": _randn(gen, (1, m, k), dtype), "w": _randn(gen, (k, n), dtype) * k**-0.5,
                    "b": _randn(gen, (n,), dtype)}

        def run(x, w, b):
            return torch.addmm(b, x.view(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[-1])

        cases.append(Case("conv1d", "gemm", dtype, {"m": m, "n": n, "k": k}, make, run,
                          weights=("w",), cold=cold))
    return cases


def lm_head_cases(rng, count: int, dtype: str) -> list[Case]:
    """F.linear without bias over a vocabulary-sized weight (V, d): a language model's output
    projection, the largest weight of its step (V 8k-64k, d 512-2048: 16-256 MiB of fp32,
    beyond the general sweep's 32 MiB), for m = 1 (decode) or up to 256 tokens."""
    cases = []
    while len(cases) < count:
        vocab = _log_int(rng, 8192, 65536, 64 if rng.random() < 0.5 else 1)
        d = _log_int(rng, 512, 2048, 64)
        m = 1 if rng.random() < 0.3 else _log_int(rng, 2, 256)
        m = min(m, max(1, int(_MAX_LM_HEAD_FLOPS // (2 * vocab * d))), _MAX_ELEMENTS // vocab)
        if vocab * d > _MAX_LM_HEAD_WEIGHT_ELEMENTS:
            continue

        def make(gen, m=m, vocab=vocab, d=d):
            return {"x": _randn(gen, (1, m, d), dtype),
                    "w": _randn(gen, (vocab, d), dtype) * d**-0.5}

        cases.append(Case("lm_head", "gemm", dtype, {"m": m, "n": vocab, "k": d}, make,
                          lambda x, w: F.linear(x, w), weights=("w",)))
    return cases


def bmm_cases(rng, count: int, dtype: str) -> list[Case]:
    cases = []
    for _ in range(count):
        b = _log_int(rng, 2, 48)
        m, n, k = _gemm_shape(rng, m_high=1024, p_vector=0.1)
        while 2 * b * m * n * k > _MAX_GEMM_FLOPS:
            b = max(1, b // 2)
            m = max(1, m // 2) if b == 1 else m

        def make(gen, b=b, m=m, n=n, k=k):
            return {"a": _randn(gen, (b, m, k), dtype), "c": _randn(gen, (b, k, n), dtype)}

        cases.append(Case("bmm", "gemm", dtype, {"b": b, "m": m, "n": n, "k": k}, make,
                          lambda a, c: torch.bmm(a, c)))
    return cases


def attention_cases(rng, count: int, dtype: str, *, decode: bool) -> list[Case]:
    """F.scaled_dot_product_attention on (b, h, s, d): prefill (s_q = s_k, causal or not) or
    decode (s_q = 1 over s_k cached keys); grouped-query heads on half of them."""
    cases = []
    for i in range(count):
        d = int(rng.choice([32, 64, 64, 128]))
        h_kv = int(rng.choice([1, 2, 4, 8, 12]))
        h_q = h_kv * int(rng.choice([1, 1, 2, 4]))
        b = int(rng.choice([1, 1, 2, 4]))
        s_k = _log_int(rng, 16, 4096 if decode else 1024)
        s_q = 1 if decode else s_k
        while not decode and 4 * b * h_q * s_q * s_k * d > 2 * _MAX_GEMM_FLOPS:
            s_k = s_q = s_k // 2
        causal = (not decode) and i % 2 == 0

        def make(gen, b=b, h_q=h_q, h_kv=h_kv, s_q=s_q, s_k=s_k, d=d):
            return {"q": _randn(gen, (b, h_q, s_q, d), dtype),
                    "k": _randn(gen, (b, h_kv, s_k, d), dtype),
                    "v": _randn(gen, (b, h_kv, s_k, d), dtype)}

        def run(q, k, v, causal=causal, gqa=h_q != h_kv):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

        cases.append(Case("sdpa_decode" if decode else "sdpa", "attention", dtype,
                          {"b": b, "h_q": h_q, "h_kv": h_kv, "s_q": s_q, "s_k": s_k, "d": d,
                           "causal": causal}, make, run))
    return cases


def _rows_cols(rng) -> tuple[int, int]:
    cols = _log_int(rng, 32, 8192, 64 if rng.random() < 0.5 else 1)
    numel = _log_int(rng, 64, _MAX_ELEMENTS)
    return max(1, numel // cols), cols


def _vector_cases(rng, count: int, dtype: str, family: str, category: str,
                  make_tensors: Callable, run: Callable) -> list[Case]:
    cases = []
    for _ in range(count):
        rows, cols = _rows_cols(rng)

        def make(gen, rows=rows, cols=cols):
            return make_tensors(gen, rows, cols, dtype)

        cases.append(Case(family, category, dtype, {"rows": rows, "cols": cols}, make, run))
    return cases


def _one(gen, rows, cols, dtype):
    return {"x": _randn(gen, (rows, cols), dtype)}


def _two(gen, rows, cols, dtype):
    return {"x": _randn(gen, (rows, cols), dtype), "y": _randn(gen, (rows, cols), dtype)}


def _row_vector(gen, rows, cols, dtype):
    return {"x": _randn(gen, (rows, cols), dtype), "y": _randn(gen, (cols,), dtype)}


def _affine(gen, rows, cols, dtype):
    return {"x": _randn(gen, (rows, cols), dtype), "w": _randn(gen, (cols,), dtype),
            "b": _randn(gen, (cols,), dtype)}


def _rms_norm(x, w):  # HF LlamaRMSNorm / F.rms_norm on CPU: pow, mean, add, rsqrt, mul, mul
    return F.rms_norm(x, (x.shape[-1],), w, eps=1e-6)


#: family -> (category, tensors, call); memory-bound ops over a (rows, cols) tensor.
VECTOR_FAMILIES: dict[str, tuple[str, Callable, Callable]] = {
    "add": ("elementwise", _two, lambda x, y: x + y),
    "mul": ("elementwise", _two, lambda x, y: x * y),
    "add_row": ("elementwise", _row_vector, lambda x, y: x + y),
    "div_scalar": ("elementwise", _one, lambda x: x / 8.0),
    "neg": ("elementwise", _one, lambda x: -x),
    "pow2": ("elementwise", _one, lambda x: x.pow(2)),
    "rsqrt": ("elementwise", _one, lambda x: torch.rsqrt(x.abs() + 1.0)),
    "gelu": ("elementwise", _one, lambda x: F.gelu(x)),
    "tanh": ("elementwise", _one, lambda x: torch.tanh(x)),
    "silu": ("elementwise", _one, lambda x: F.silu(x)),
    "exp": ("elementwise", _one, lambda x: torch.exp(x)),
    "sin": ("elementwise", _one, lambda x: torch.sin(x)),
    "sigmoid": ("elementwise", _one, lambda x: torch.sigmoid(x)),
    "softmax": ("reduction", _one, lambda x: torch.softmax(x, -1)),
    "sum": ("reduction", _one, lambda x: x.sum(-1)),
    "mean": ("reduction", _one, lambda x: x.mean(-1, keepdim=True)),
    "amax": ("reduction", _one, lambda x: x.amax(-1)),
    "layer_norm": ("norm", _affine,
                   lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)),
    "rms_norm": ("norm", lambda g, r, c, d: {k: v for k, v in _affine(g, r, c, d).items()
                                             if k != "b"}, _rms_norm),
    "view": ("view", _one, lambda x: x.view(-1)),
    "transpose": ("view", _one, lambda x: x.t()),
    "transpose_copy": ("copy", _one, lambda x: x.t().contiguous()),
    "clone": ("copy", _one, lambda x: x.clone()),
    "cat": ("copy", _two, lambda x, y: torch.cat([x, y], dim=0)),
    "to_bf16": ("copy", _one, lambda x: x.to(torch.bfloat16)),
}


def embedding_cases(rng, count: int, dtype: str) -> list[Case]:
    """F.embedding: gather ``n`` rows of a (V, d) table (token or position embedding)."""
    cases = []
    for _ in range(count):
        vocab = _log_int(rng, 256, 65536)
        d = _log_int(rng, 64, 4096, 64)
        n = _log_int(rng, 1, 2048)
        vocab = min(vocab, _MAX_ELEMENTS // d)

        def make(gen, vocab=vocab, d=d, n=n):
            return {"idx": torch.randint(0, vocab, (1, n), generator=gen),
                    "w": _randn(gen, (vocab, d), dtype)}

        cases.append(Case("embedding", "embedding", dtype, {"vocab": vocab, "d": d, "n": n},
                          make, lambda idx, w: F.embedding(idx, w), weights=("w",)))
    return cases


#: family builder, points per dtype (full sweep), dtypes; a quick sweep takes a third.
FAMILIES: dict[str, tuple[Callable, int, tuple[str, ...]]] = {
    "linear": (lambda rng, n, dt: linear_cases(rng, n, dt, bias=True), 90, ("fp32", "bf16")),
    "linear_nobias": (lambda rng, n, dt: linear_cases(rng, n, dt, bias=False), 60,
                      ("fp32", "bf16")),
    "linear_cold": (lambda rng, n, dt: linear_cases(rng, n, dt, bias=True, cold=True), 30,
                    ("fp32", "bf16")),
    "bmm": (bmm_cases, 45, ("fp32", "bf16")),
    "sdpa": (lambda rng, n, dt: attention_cases(rng, n, dt, decode=False), 45, ("fp32", "bf16")),
    "sdpa_decode": (lambda rng, n, dt: attention_cases(rng, n, dt, decode=True), 30,
                    ("fp32", "bf16")),
    # 60 per dtype since 2026-11-29 (30 before: the held-out p90 of 20 points was its 2nd-worst,
    # and the bf16 fit held no gather of many short rows); the first 30 draws are unchanged
    "embedding": (embedding_cases, 60, ("fp32", "bf16")),
    **{name: ((lambda rng, n, dt, name=name, spec=spec: _vector_cases(rng, n, dt, name, *spec)),
              24, ("fp32", "bf16") if name in ("add", "mul", "gelu", "silu", "softmax",
                                                "layer_norm", "rms_norm", "cat") else ("fp32",))
       for name, spec in VECTOR_FAMILIES.items()},
    # last, so that adding them (2026-11-29) left every earlier family's draws as they were
    "conv1d": (lambda rng, n, dt: conv1d_cases(rng, n, dt), 30, ("fp32", "bf16")),
    "conv1d_cold": (lambda rng, n, dt: conv1d_cases(rng, n, dt, cold=True), 20,
                    ("fp32", "bf16")),
    # an LM head tied to the embeddings (F.linear without bias: mm) over weights from DRAM
    "linear_nobias_cold": (lambda rng, n, dt: linear_cases(rng, n, dt, bias=False, cold=True),
                           20, ("fp32", "bf16")),
    # vocabulary-sized weights (since 2026-11-29 evening): GPT-2's and OPT's LM heads (154 MB)
    # ran 13-27 % over a model fitted on weights of at most 32 MiB
    "lm_head": (lm_head_cases, 15, ("fp32", "bf16")),
}


def build_cases(*, quick: bool = False, seed: int = 0,
                families: tuple[str, ...] | None = None) -> list[Case]:
    """Every family's cases (a third as many per family when ``quick``), drawn from ``seed``."""
    cases = []
    for index, (name, (builder, count, dtypes)) in enumerate(FAMILIES.items()):
        if families is not None and name not in families:
            continue
        for d, dtype in enumerate(dtypes):
            rng = np.random.default_rng([seed, index, d])
            n = max(4, count // 3) if quick else count
            cases.extend(dataclasses.replace(case, split="heldout" if i % HELDOUT_EVERY == 1
                                             else "fit")
                         for i, case in enumerate(builder(rng, n, dtype)))
    return _unique(cases)


def _unique(cases: list[Case]) -> list[Case]:
    """Drop repeated draws of one shape (the first draw, and its split, is kept)."""
    seen: set[str] = set()
    return [c for c in cases if not (c.key in seen or seen.add(c.key))]
