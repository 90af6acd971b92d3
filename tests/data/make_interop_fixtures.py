"""Regenerate the trace-interop fixtures of tests/test_importers.py (run from the repo root).

    python tests/data/make_interop_fixtures.py [--gpu-only]

- ``profiler-cpu.json.gz`` and ``et-cpu.json.gz``: one training step (forward, backward, SGD step)
  of a tiny attention + MLP block on this CPU, recorded at once by ``torch.profiler`` (Kineto
  Chrome trace, ``record_shapes=True, with_stack=True``) and ``ExecutionTraceObserver`` (the
  PyTorch execution trace Chakra reads). Timings and ids differ from run to run; the tests assert
  only what is stable (op sequence, shapes, costs, phases, deps).
- ``profiler-gpu.json``: a hand-written Kineto-shaped GPU trace (no GPU here): cpu_op / cuda_runtime
  / kernel / gpu_memcpy events with correlation ids, two streams, an autograd thread, a collective
  and two kernels no op launched. Its numbers are round so tests can check sums by hand.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def record_cpu_step(out_dir: Path) -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.profiler import ExecutionTraceObserver, ProfilerActivity, profile, record_function

    class Block(nn.Module):
        """b=2, s=8, h=16, 2 heads: qkv projection, causal SDPA, residual, GELU MLP."""

        def __init__(self, h: int = 16, heads: int = 2):
            super().__init__()
            self.heads = heads
            self.qkv, self.fc1, self.fc2 = nn.Linear(h, 3 * h), nn.Linear(h, 32), nn.Linear(32, h)

        def forward(self, x):
            b, s, h = x.shape
            q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, nh, s, hs)
            x = x + a.transpose(1, 2).reshape(b, s, h)
            return x + self.fc2(F.gelu(self.fc1(x)))

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, x = Block(), torch.randn(2, 8, 16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        et_path, kineto_path = Path(tmp) / "et.json", Path(tmp) / "kineto.json"
        observer = ExecutionTraceObserver().register_callback(str(et_path))
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=True,
                     execution_trace_observer=observer) as prof:
            with record_function("## forward ##"):
                loss = model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
        prof.export_chrome_trace(str(kineto_path))
        observer.unregister_callback()
        _gzip(kineto_path, out_dir / "profiler-cpu.json.gz")
        _gzip(et_path, out_dir / "et-cpu.json.gz")


def _gzip(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, gzip.GzipFile(dst, "wb", mtime=0) as fout:
        shutil.copyfileobj(fin, fout)


class _KinetoEvents:
    """Builds Kineto-shaped events: host calls on CPU threads, device work on streams."""

    def __init__(self, t0_us: float = 1_000_000.0):
        self.t0_us = t0_us
        self.record_ids = 0
        self.events: list[dict] = [_meta_event("thread_name", 100, "thread 100 (python)")]

    def host(self, cat: str, name: str, tid: int, ts: float, dur: float, **args) -> None:
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": 7, "tid": tid,
                            "ts": self.t0_us + ts, "dur": dur, "args": args})

    def op(self, name, tid, ts, dur, dims, types, concrete=None, seq=None) -> None:
        """A cpu_op; record function ids count 1, 2, ... in call order."""
        self.record_ids += 1
        args = {"Input Dims": dims, "Input type": types, "Record function id": self.record_ids,
                "Concrete Inputs": concrete or [""] * len(dims)}
        if seq is not None:
            args["Sequence number"] = seq
        self.host("cpu_op", name, tid, ts, dur, **args)

    def launch(self, tid, ts, corr, kernel, stream, start, dur, cat="kernel") -> None:
        self.host("cuda_runtime", "cudaLaunchKernel", tid, ts, 2, correlation=corr)
        self.device(cat, kernel, stream, start, dur, corr)

    def device(self, cat, name, stream, start, dur, corr) -> None:
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": 0, "tid": stream,
                            "ts": self.t0_us + start, "dur": dur,
                            "args": {"correlation": corr, "stream": stream, "device": 0}})


def gpu_trace() -> dict:
    """The hand-written GPU trace (times in us; kernels 10, 20+5, 4, 40, 8, 6 us, 2 orphans)."""
    main, autograd, bf16, f32 = 100, 200, "c10::BFloat16", "float"
    k = _KinetoEvents()
    k.host("user_annotation", "ProfilerStep#3", main, 0, 1000)
    k.host("python_function", "nn.Module: Linear_0", main, 1, 60)
    k.op("aten::linear", main, 2, 50, [[4, 64], [128, 64], [128]], [bf16] * 3, seq=1)
    k.op("aten::t", main, 3, 5, [[128, 64]], [bf16])
    k.op("aten::addmm", main, 10, 30, [[128], [4, 64], [64, 128], [], []],
         [bf16, bf16, bf16, "Scalar", "Scalar"], ["", "", "", "1", "1"], seq=1)
    k.launch(main, 20, 11, "sm90_xmma_gemm_bf16", 7, 100, 10)
    k.op("aten::scaled_dot_product_attention", main, 70, 60, [[1, 2, 4, 32]] * 3 + [[]] * 4,
         [bf16] * 3 + ["", "Scalar", "Scalar", ""], ["", "", "", "", "0.", "True", "", ""])
    k.op("aten::_scaled_dot_product_flash_attention", main, 72, 50, [[1, 2, 4, 32]] * 3 + [[]] * 4,
         [bf16] * 3 + ["Scalar", "Scalar", "Scalar", ""], ["", "", "", "0.", "True", "False", ""])
    k.launch(main, 80, 12, "flash_fwd_kernel", 7, 120, 20)
    k.launch(main, 90, 13, "flash_fwd_splitkv_combine", 7, 140, 5)
    k.op("aten::view", main, 140, 5, [[1, 2, 4, 32], []], [bf16, "ScalarList"], ["", "[8, 32]"])
    k.op("aten::copy_", main, 150, 20, [[8, 32], [8, 32], []], [bf16, f32, "Scalar"],
         ["", "", "False"])
    k.launch(main, 155, 14, "Memcpy DtoD (Device -> Device)", 7, 160, 4, cat="gpu_memcpy")
    k.op("c10d::allreduce_", main, 200, 30, [[[8, 32]], [], [], [], [], []],
         ["TensorList", "", "", "", "Scalar", "Scalar"], ["", "", "", "", "True", "-1"])
    k.launch(main, 210, 15, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 20, 220, 40)
    k.launch(main, 240, 16, "orphan_kernel_from_python", 7, 250, 3)  # no cpu_op around it
    k.host("user_annotation", "Optimizer.step#AdamW.step", main, 600, 100)
    k.op("aten::_foreach_mul_", main, 610, 20, [[[128, 64], [128]], []], ["TensorList", "Scalar"],
         ["", "0.9"])
    k.launch(main, 615, 18, "multi_tensor_apply_kernel", 7, 650, 6)
    k.device("kernel", "kernel_without_launch", 7, 700, 1, 99)
    backward = {"Sequence number": 1, "Fwd thread id": 1}
    k.host("cpu_op", "autograd::engine::evaluate_function: AddmmBackward0", autograd, 300, 80,
           **backward)
    k.host("cpu_op", "AddmmBackward0", autograd, 301, 70, **backward)
    k.op("aten::mm", autograd, 305, 40, [[4, 128], [128, 64]], [bf16, bf16])
    k.launch(autograd, 310, 17, "sm90_xmma_gemm_bf16_bwd", 7, 330, 8)
    return {"schemaVersion": 1, "record_shapes": 1,
            "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}],
            "distributedInfo": {"backend": "nccl", "rank": 1, "world_size": 4},
            "traceEvents": k.events}


def _meta_event(name: str, tid: int, label: str) -> dict:
    return {"ph": "M", "name": name, "pid": 7, "tid": tid, "args": {"name": label}}


if __name__ == "__main__":
    import sys

    if "--gpu-only" not in sys.argv:
        record_cpu_step(HERE)
    (HERE / "profiler-gpu.json").write_text(json.dumps(gpu_trace(), indent=1) + "\n")
    for name in ("profiler-cpu.json.gz", "et-cpu.json.gz", "profiler-gpu.json"):
        print(f"{name}: {(HERE / name).stat().st_size} bytes")
