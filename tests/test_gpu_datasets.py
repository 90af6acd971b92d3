"""Dataset adapters over ../shared/ground_truth: rows, splits, scopes (skipped without the data)."""

from __future__ import annotations

import numpy as np
import pytest

from validation.datasets import DATASETS, FIT_SPECS, DataMissing, ground_truth_dir, load_rows
from validation.datasets.common import COLUMNS

try:
    ROOT = ground_truth_dir()
except DataMissing as exc:  # CI has the folder beside the clone; a bare checkout may not
    pytest.skip(f"ground truth not available: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def rows():
    return load_rows("all")


def test_every_dataset_loads_with_the_row_schema(rows):
    assert set(rows["dataset"]) == set(DATASETS)
    assert set(COLUMNS) <= set(rows.columns) and (rows["measured_s"] > 0).all()


@pytest.mark.parametrize(("dataset", "spec", "category", "count"), [
    ("aiconfigurator", "nvidia-h100-sxm5-80gb", "gemm", 35742),  # bf16 grid (fp8 apart)
    ("aiconfigurator", "nvidia-h100-sxm5-80gb", "gemm_fp8", 35742),
    ("aiconfigurator", "nvidia-a100-sxm4-80gb", "gemm", 9240 + 35742),  # vLLM + SGLang files
    ("aiconfigurator", "nvidia-b200", "attention", 12030 + 16351),
    ("aiconfigurator", "nvidia-l40s", "collective", 504),
    ("vidur", "nvidia-h100-sxm5-80gb", "gemm", 2 * 1044 * 4),  # 2 models x rows x 4 GEMMs
    ("neusight", "nvidia-h100-sxm5-80gb", "gemm", 2477 + 1040),  # bmm + linear
])
def test_row_counts_match_the_sources(rows, dataset, spec, category, count):
    selected = rows[(rows["dataset"] == dataset) & (rows["spec"] == spec)
                    & (rows["category"] == category)]
    assert len(selected) == count


def test_split_is_the_a100_family(rows):
    fit = rows["split"] == "fit"
    assert set(rows.loc[fit, "spec"]) <= set(FIT_SPECS)
    assert not rows.loc[~fit, "spec"].isin(FIT_SPECS).any()


def test_timing_scopes_and_clock_modes_follow_the_readmes(rows):
    by_dataset = rows.groupby("dataset")[["scope", "clock_mode"]].agg(lambda s: set(s))
    assert by_dataset.loc["aiconfigurator", "clock_mode"] == {"locked"}
    assert by_dataset.loc["aiconfigurator", "scope"] == {"graph", "kernel"}  # nccl-tests: kernel
    assert by_dataset.loc["vidur", "scope"] == {"kernel"}
    assert by_dataset.loc["neusight", "scope"] == {"event"}
    assert by_dataset.loc["neusight", "clock_mode"] == {"default"}


def test_shapes_follow_each_source_convention(rows):
    # NeuSight bmm contracts over N: A[B, M, N] @ B[B, N, K] -> k = N
    bmm = rows[(rows["dataset"] == "neusight") & (rows["op"] == "bmm")].iloc[0]
    assert np.isfinite([bmm["b"], bmm["m"], bmm["n"], bmm["k"]]).all()
    # Vidur Llama-2-7B TP1 QKV projection: n = (32 + 2 * 32) * 128, k = 4096
    qkv = rows[(rows["dataset"] == "vidur") & (rows["op"] == "attn_pre_proj")
               & (rows["model"] == "Llama-2-7b-hf") & (rows["tp"] == 1)].iloc[0]
    assert (qkv["n"], qkv["k"]) == (12288, 4096)
    decode = rows[(rows["op"] == "decode")].iloc[0]
    assert decode["s_q"] == 1
    # the profiled block repeats: a GEMM's weights compete with the whole block for L2
    block = (12288 * 4096 + 4096 * 4096 + 2 * 11008 * 4096 + 11008 * 4096) * 2
    assert qkv["resident_bytes"] >= block


def test_vidur_kernels_loop_steps_follow_their_launch_configs(rows):
    # Llama-2-7B TP1 (h 4096, f 11008, 32 heads of 128): rms_norm 2 passes of 4096 / 1024,
    # silu_and_mul ceil(11008 / 1024), rotary 2048 q pairs + 2048 k pairs over 512 threads
    steps = rows[(rows["dataset"] == "vidur") & (rows["model"] == "Llama-2-7b-hf")
                 & (rows["tp"] == 1)].groupby("op")["row_steps"].first()
    assert (steps["input_layernorm"], steps["mlp_act"], steps["attn_rope"]) == (8, 11, 8)
    assert np.isnan(steps["add"]) and np.isnan(steps["attn_pre_proj"])


def test_missing_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TKSIM_GROUND_TRUTH", str(tmp_path / "absent"))
    with pytest.raises(DataMissing, match="TKSIM_GROUND_TRUTH"):
        ground_truth_dir()
    with pytest.raises(KeyError, match="unknown dataset"):
        load_rows("nope", ROOT)
