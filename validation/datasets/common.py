"""What every dataset adapter shares: where the data lives, the row schema, the timing scopes.

The public measurements live outside the repository, in ``../shared/ground_truth`` beside the
clone (override with ``TKSIM_GROUND_TRUTH``); nothing is ever copied in. An adapter reads one
source and returns a pandas DataFrame of **rows**, one measured op each, with the columns of
:data:`COLUMNS`: what the op is (``category``, ``op``, shapes, ``dtype``), where it ran (``spec``:
a tksim spec name), how it was timed (``scope``, ``clock_mode``) and ``measured_s``.

Timing scopes (``SCOPES``), from each source's README:

- ``graph``: CUDA-graph replay averaged per call (AIConfigurator): no host launch cost, but each
  kernel's device-side start-up and the gap between graph nodes are inside; compared with t_calc.
- ``kernel``: summed CUDA-kernel durations from the profiler (Vidur): compared with t_calc.
- ``event``: CUDA events around one eager call (NeuSight, LLMCompass): compared with t_calc plus
  the launch and event floor (``GpuParams.event_floor_s``).

Clock modes (``sim.cost.gpu_params.CLOCK_MODES``): AIConfigurator locks application clocks at the
maximum (``locked``); the others ran at the driver's default boost (``default``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "SCOPES", "CATEGORIES", "ground_truth_dir", "read_csv", "rows_frame",
           "DataMissing"]

SCOPES = ("graph", "kernel", "event")
CATEGORIES = ("gemm", "gemm_fp8", "attention", "memory", "collective")
_REPO = Path(__file__).resolve().parents[2]
COLUMNS = {
    "dataset": "", "source": "", "category": "", "op": "", "spec": "", "dtype": "",
    "scope": "", "clock_mode": "", "measured_s": np.nan,
    # GEMM (b, m, n, k) and the working set that decides L2 residency
    "b": np.nan, "m": np.nan, "n": np.nan, "k": np.nan, "resident_bytes": np.nan,
    # attention (b as batch), heads, query / key lengths, head dim
    "h_q": np.nan, "h_kv": np.nan, "s_q": np.nan, "s_k": np.nan, "d": np.nan,
    # memory-bound ops; row_steps: loop steps of a kernel that runs one CTA per row;
    # read_bytes: the inputs of one pass; fresh_bytes: those the kernel just before it wrote (in
    # L2 if they fit, sim.cost.l2_reuse)
    "nbytes": np.nan, "flops": np.nan, "row_steps": np.nan, "read_bytes": np.nan,
    "fresh_bytes": 0.0,
    # collectives
    "kind": "", "size_bytes": np.nan, "num_ranks": np.nan,
    # grouping for end-to-end sums (Vidur layers): model, shape and the source file's row
    "model": "", "num_tokens": np.nan, "tp": np.nan, "source_row": -1,
}


class DataMissing(FileNotFoundError):
    """The ground-truth folder (or one of its files) is absent."""


def ground_truth_dir(data_dir: str | Path | None = None) -> Path:
    """The ground-truth folder: ``data_dir``, else ``$TKSIM_GROUND_TRUTH``, else
    ``<repo>/../shared/ground_truth``. Raises :class:`DataMissing` if it does not exist."""
    path = Path(data_dir or os.environ.get("TKSIM_GROUND_TRUTH")
                or _REPO.parent / "shared" / "ground_truth")
    if not path.is_dir():
        raise DataMissing(f"ground-truth folder not found: {path} (set TKSIM_GROUND_TRUTH)")
    return path


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataMissing(f"missing ground-truth file: {path}")
    return pd.read_csv(path)


def rows_frame(**columns) -> pd.DataFrame:
    """A rows DataFrame with every column of :data:`COLUMNS` (defaults for those not given)."""
    length = max(len(v) for v in columns.values() if np.ndim(v) > 0)
    data = {name: columns.get(name, default) for name, default in COLUMNS.items()}
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown row columns: {sorted(unknown)}")
    frame = pd.DataFrame({k: np.broadcast_to(v, (length,)) if np.ndim(v) == 0 else np.asarray(v)
                          for k, v in data.items()})
    return frame
