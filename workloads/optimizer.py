"""The optimizer step of a training capture: AdamW, and which parameter each of its ops updates.

On a CPU-only torch, AdamW runs one parameter at a time (``foreach=False``: ~10 ops per
parameter: ``add_`` on the step count, ``mul_`` for weight decay, ``lerp_`` / ``mul_`` /
``addcmul_`` for the moments, ``sqrt``, ``div``, ``add_``, ``addcdiv_``); a GPU run would group
them into foreach or fused kernels. To let the simulator regroup them, :class:`ParamLabeller`
labels each optimizer op with ``attrs = {"optimizer": "adamw", "param": <parameter name>}`` and the
parameter's module as its module path. It finds the parameter by storage identity: the ops read or
write the parameter, its gradient or its state (``exp_avg``, ``exp_avg_sq``, ``step``), or a
temporary made from them (labelled as it is made). Ops that only touch the step count (a 0-dim
tensor: ``step += 1`` and its ``.item()``) also get ``"host_scalar": True``: in a GPU run the step
count stays on the host (unless ``capturable``/``fused``), so they launch no kernel and do not
wait for the device.

Lifecycle: :func:`make_adamw` -> :func:`init_state` (once, unrecorded, so that every recorded step
is a steady-state step) -> after backward, ``ParamLabeller(model, optimizer)`` -> ``step()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from workloads.tensors import storage_ref

__all__ = ["make_adamw", "init_state", "ParamLabeller", "optimizer_meta", "ADAMW"]

#: AdamW hyper-parameters of the captured step (Loshchilov & Hutter 2019; values as in the
#: Llama 2 paper, Sec. 2.2: beta2 0.95, eps 1e-5, weight decay 0.1). They do not change the work.
ADAMW = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-5, "weight_decay": 0.1}


def make_adamw(model: nn.Module) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters, one parameter at a time (``foreach=False``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, foreach=False, **ADAMW)


def init_state(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer state (moments, step counts) by one step on zero gradients."""
    if optimizer.state:
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def optimizer_meta(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``meta["optimizer"]``: kind, implementation, parameter tensors and elements, hyper-params."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {"kind": "adamw", "implementation": "single_tensor", "num_params": len(params),
            "param_numel": sum(p.numel() for p in params),
            **{k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()}}


class ParamLabeller:
    """A ``workloads.recorder.Labeller`` for the optimizer phase (see the module doc)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self._param_of: dict[int, str] = {}  # storage id -> parameter name
        self._steps: set[int] = set()  # storage ids of the step counts
        self._refs: list[Any] = []  # keep the storages' ids unique while labelling
        for name, p in model.named_parameters():
            state = optimizer.state.get(p, {})
            tensors = [p, p.grad, *(v for v in state.values() if isinstance(v, torch.Tensor))]
            self._add([t for t in tensors if t is not None], name)
            if isinstance(state.get("step"), torch.Tensor):
                self._steps.update(self._storage_ids([state["step"]]))

    def __call__(self, inputs: Sequence[torch.Tensor],
                 outputs: Sequence[torch.Tensor]) -> tuple[str, Mapping[str, Any]]:
        storages = self._storage_ids(inputs)
        name = next((self._param_of[s] for s in storages if s in self._param_of), None)
        if name is None:
            return "", {"optimizer": "adamw"}
        self._add(outputs, name)
        attrs = {"optimizer": "adamw", "param": name}
        if all(s in self._steps for s in storages):
            attrs["host_scalar"] = True
        return name.rpartition(".")[0], attrs

    def _add(self, tensors: Sequence[torch.Tensor], name: str) -> None:
        for t in tensors:
            ref = storage_ref(t)
            if ref is not None:
                self._refs.append(ref)
                self._param_of.setdefault(ref.cdata, name)

    @staticmethod
    def _storage_ids(tensors: Sequence[torch.Tensor]) -> list[int]:
        refs = (storage_ref(t) for t in tensors)
        return [ref.cdata for ref in refs if ref is not None]
