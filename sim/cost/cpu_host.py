"""Host time of a CPU step from a host profile: warm Python, slowed by how cold the step leaves it.

A trace with a host profile (``Op.warm_host_s``, :mod:`workloads.host_twin`) knows what the
model code's Python costs before each op when that code is in the caches. In a full-size step
it often is not: between two runs of the same code (the same op of the next layer, or of the
next step) the step's kernels stream their data through the caches, and the other tenants of
a shared cache evict lines too. The longer since the code last ran, the colder it is::

    host_i = warm_i (1 + cold_factor (1 - exp(-since_i / cold_time)))
             - call_overlap x host_calls_i

``since_i`` is the predicted kernel time (t_calc) since the op's code last ran: since the
previous op with the same :func:`code_key` (one layer back), or, for code that runs once a
step, a whole step (steps run back to back). ``cold_factor`` (how much slower fully cold code
runs), ``cold_time`` (how long its lines last) and ``call_overlap`` (the per-call part of the
measured host time that the op model already prices in its ``dispatch``: the Python side of a
torch call) are fitted by ``validation.cpu_calibrate`` on the calibration models' measured host
times, never on a held-out model. With ``call_overlap`` subtracted, an op's t_pre =
``dispatch`` + host_i, at least 0.

Why time, not bytes: the host time of a step, real over its twin, measured here 2026-11-29:
prefill 4.1x on GPT-2 and OPT-125m, decode 2.4x and 2.6x, although both phases stream the same
7 MB of weights per layer (bytes since the code last ran put every gap of both at the cold
limit); prefill's layers take 10x longer. bert-tiny's 3.0x comes from the LM head that runs
once per 8 ms step. Fitted on OPT-125m alone, a 10 ms cold time predicted the other models'
host times within -12 to +3 %; a bytes model, -60 to +171 %.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from sim.trace import Op

__all__ = ["code_key", "since_last_run", "cold_fraction", "profiled_host_s", "has_profile"]

_LAYER_INDEX = re.compile(r"\.\d+(?=\.|$)")


def has_profile(ops: Sequence[Op]) -> bool:
    """Whether every op has a warm host time (a trace captured with a host profile)."""
    return bool(ops) and all(op.warm_host_s is not None for op in ops)


def code_key(ops: Sequence[Op]) -> list[tuple[str, str, int]]:
    """Each op's code: its module path with layer indices dropped, its name, and how many ops of
    that name its own module ran before it (the same op of every layer shares a key)."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for op in ops:
        ordinal = seen.get((op.module, op.name), 0)
        seen[(op.module, op.name)] = ordinal + 1
        keys.append((_LAYER_INDEX.sub(".#", op.module), op.name, ordinal))
    return keys


def since_last_run(ops: Sequence[Op], t_calc: Sequence[float]) -> list[float]:
    """Kernel seconds since each op's code last ran (module doc), steps back to back."""
    keys = code_key(ops)
    elapsed = [0.0]
    for t in t_calc:
        elapsed.append(elapsed[-1] + t)
    step = elapsed[-1]
    last = {key: i for i, key in enumerate(keys)}  # the previous step's last run of each
    since = []
    for i, key in enumerate(keys):
        j = last[key]
        since.append(elapsed[i] - elapsed[j] if j < i else step - (elapsed[j] - elapsed[i]))
        last[key] = i
    return since


def cold_fraction(since_s, cold_time_s: float):
    """How much of the code's lines are gone after ``since_s`` (0 warm, 1 cold); a float, or an
    array for an array of times."""
    if cold_time_s <= 0:
        return 0.0 * np.asarray(since_s) if np.ndim(since_s) else 0.0
    fraction = 1.0 - np.exp(-np.asarray(since_s, dtype=float) / cold_time_s)
    return fraction if np.ndim(since_s) else float(fraction)


def profiled_host_s(ops: Sequence[Op], t_calc: Sequence[float], calls: Sequence[float], *,
                    cold_factor: float, cold_time_s: float,
                    call_overlap_s: float) -> list[float]:
    """Each op's host time (module doc), before ``dispatch``; may be negative where the
    overlap exceeds a warm gap (the caller floors t_pre at 0)."""
    since = since_last_run(ops, t_calc)
    return [op.warm_host_s * (1.0 + cold_factor * cold_fraction(s, cold_time_s))
            - call_overlap_s * c for op, s, c in zip(ops, since, calls, strict=True)]
