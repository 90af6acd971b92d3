"""Adapters from public GPU measurements (``../shared/ground_truth``) to rows tksim can predict.

Each adapter's ``load(root)`` returns a DataFrame of rows (schema: :mod:`.common`). ``load_rows``
reads one dataset or all of them and tags each row with its ``split``: ``fit`` for the A100 family
(the only GPUs calibration may see), ``heldout`` for every other GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from validation.datasets import aiconfigurator, llmcompass, neusight, vidur
from validation.datasets.common import COLUMNS, SCOPES, DataMissing, ground_truth_dir

__all__ = ["DATASETS", "FIT_SPECS", "COLUMNS", "SCOPES", "DataMissing", "ground_truth_dir",
           "load_rows"]

DATASETS = {
    "aiconfigurator": aiconfigurator.load,
    "vidur": vidur.load,
    "neusight": neusight.load,
    "llmcompass": llmcompass.load,
}
#: The calibration split: every A100 variant (SXM4 80GB, PCIe 80GB / 40GB).
FIT_SPECS = ("nvidia-a100-sxm4-80gb", "nvidia-a100-pcie-80gb", "nvidia-a100-pcie-40gb")


def load_rows(dataset: str = "all", data_dir: str | Path | None = None) -> pd.DataFrame:
    """Rows of ``dataset`` (a key of :data:`DATASETS`, or ``all``) with their ``split``."""
    root = ground_truth_dir(data_dir)
    names = list(DATASETS) if dataset == "all" else [dataset]
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise KeyError(f"unknown dataset {unknown[0]!r}; one of all, {', '.join(DATASETS)}")
    rows = pd.concat([DATASETS[name](root) for name in names], ignore_index=True)
    rows = rows[np.isfinite(rows["measured_s"]) & (rows["measured_s"] > 0)]
    rows["split"] = np.where(rows["spec"].isin(FIT_SPECS), "fit", "heldout")
    return rows.reset_index(drop=True)
