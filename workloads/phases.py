"""The programs a capture records: a forward (prefill), one decode step, one training step.

Legend: b batch, s sequence (prompt) length, C context (tokens already in the KV cache), V
vocabulary. Each :class:`Program` has a lifecycle: ``prepare()`` once, un-recorded (make the inputs,
fill the KV cache, create the optimizer state), inside the capture's tensor mode (real or fake);
then ``run(recorder)`` per step, recorded or (``recorder=None``) not. Every step does the same work:
a decode step is undone after it runs (the KV cache goes back to C tokens), a training step starts
from existing optimizer state.

- :class:`Forward`: ``module(*args, **kwargs)`` under ``torch.no_grad()``; a prefill is the forward
  of b x s prompt tokens (a decoder fills its KV cache, an encoder has none). Ops: phase forward.
- :class:`Decode`: an un-recorded prefill of C tokens fills a KV cache (HF ``DynamicCache``); the
  step feeds 1 new token per sequence: attention has s_q = 1, s_k = C + 1. Ops: phase forward.
- :class:`Train`: forward with labels -> loss, ``loss.backward()``, AdamW step. Ops: phases
  forward, backward (module path of the forward op whose autograd node they run,
  ``workloads.backward``), optimizer (``workloads.optimizer.ParamLabeller``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sim.errors import InputError
from workloads.backward import backward_module_path
from workloads.optimizer import ParamLabeller, init_state, make_adamw, optimizer_meta
from workloads.recorder import Labeller, OpRecorder
from workloads.tensors import storage_ref

__all__ = ["Program", "Forward", "Decode", "Train", "token_ids"]

#: Builds the step's inputs inside the capture's tensor mode.
Inputs = Callable[[], tuple[Sequence[Any], Mapping[str, Any]]]


def token_ids(vocab: int, batch: int, seq: int, seed: int) -> torch.Tensor:
    """Random token ids (b, s) from ``seed`` (fake under a fake mode)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=generator)


class Program:
    """One capturable step of ``root`` (see the module doc); ``trains`` says autograd is used."""

    trains = False

    def __init__(self, root: nn.Module):
        self.root = root

    def prepare(self) -> None:
        """Un-recorded set-up, run once inside the capture's tensor mode."""

    def run(self, recorder: OpRecorder | None) -> None:
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """What the program adds to the trace's meta."""
        return {}


class Forward(Program):
    """``root(*args, **kwargs)`` without autograd; ``inputs`` builds args and kwargs."""

    def __init__(self, root: nn.Module, inputs: Inputs):
        super().__init__(root)
        self._inputs = inputs
        self.args: Sequence[Any] = ()
        self.kwargs: Mapping[str, Any] = {}

    def prepare(self) -> None:
        self.args, self.kwargs = self._inputs()

    def run(self, recorder: OpRecorder | None) -> None:
        with torch.no_grad():
            self.root(*self.args, **self.kwargs)


class Decode(Program):
    """One decode step of an HF causal LM with C tokens in its KV cache (b sequences)."""

    def __init__(self, root: nn.Module, *, batch: int, context: int, seed: int):
        super().__init__(root)
        self.batch, self.context, self.seed = batch, context, seed
        self._cache: Any = None
        self._saved: list[dict[str, Any]] = []

    def prepare(self) -> None:
        vocab = self.root.config.vocab_size
        prompt = token_ids(vocab, self.batch, self.context, self.seed)  # (b, C)
        self.new_ids = token_ids(vocab, self.batch, 1, self.seed + 1)  # (b, 1)
        extra = {"logits_to_keep": 1} if _accepts(self.root, "logits_to_keep") else {}
        with torch.no_grad():
            output = self.root(prompt, use_cache=True, **extra)
        cache = output.get("cache")  # transformers < 5.2x: ``past_key_values``
        self._cache = cache if cache is not None else output.past_key_values
        # the step rebinds each layer's tensors (torch.cat); restoring the bindings undoes it
        self._saved = [dict(vars(layer)) for layer in self._cache.layers]

    def run(self, recorder: OpRecorder | None) -> None:
        # transformers >= 5.2x calls the KV cache ``cache``, before ``past_key_values``
        keyword = "cache" if _accepts(self.root, "cache") else "past_key_values"
        if recorder is not None:
            recorder.labeller = _CacheAppendLabeller(self._saved, recorder.module_path)
        with torch.no_grad():
            self.root(self.new_ids, use_cache=True, **{keyword: self._cache})
        for layer, saved in zip(self._cache.layers, self._saved, strict=True):
            vars(layer).clear()
            vars(layer).update(saved)


class Train(Program):
    """One training step: forward, ``loss_fn(output)`` -> scalar loss, backward, AdamW step."""

    trains = True

    def __init__(self, root: nn.Module, inputs: Inputs, loss_fn: Callable[[Any], torch.Tensor]):
        super().__init__(root)
        self._inputs, self.loss_fn = inputs, loss_fn
        self.optimizer: torch.optim.Optimizer | None = None

    def prepare(self) -> None:
        self.root.train()
        self.args, self.kwargs = self._inputs()
        self.optimizer = make_adamw(self.root)
        init_state(self.optimizer)

    def run(self, recorder: OpRecorder | None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.root(*self.args, **self.kwargs))
        if not (isinstance(loss, torch.Tensor) and loss.dim() == 0):
            raise InputError("the training loss must be a scalar tensor; pass loss_fn= that "
                             "reduces the module's output to one", field="loss_fn")
        _switch(recorder, "backward", _backward_labels)
        loss.backward()
        _switch(recorder, "optimizer", ParamLabeller(self.root, self.optimizer)
                if recorder is not None else None)
        self.optimizer.step()

    def meta(self) -> dict[str, Any]:
        return {"optimizer": optimizer_meta(self.optimizer)}


class _CacheAppendLabeller:
    """Marks the ops that read the KV cache as it was before the step: HF's ``DynamicCache``
    appends by ``torch.cat`` (a copy of the whole cache per step, C tokens read, C + 1 written),
    where a serving engine's paged cache writes only the new token: ``kv_cache: "append"``."""

    def __init__(self, saved: Sequence[Mapping[str, Any]], module_path: Callable[[], str]):
        tensors = [v for layer in saved for v in layer.values() if isinstance(v, torch.Tensor)]
        refs = (storage_ref(t) for t in tensors)
        self._cache = {ref.cdata for ref in refs if ref is not None}
        self._module_path = module_path

    def __call__(self, inputs: Sequence[torch.Tensor],
                 outputs: Sequence[torch.Tensor]) -> tuple[str, Mapping[str, Any]]:
        refs = (storage_ref(t) for t in inputs)
        reads_cache = any(ref is not None and ref.cdata in self._cache for ref in refs)
        return self._module_path(), {"kv_cache": "append"} if reads_cache else {}


def _backward_labels(inputs: Sequence[torch.Tensor],
                     outputs: Sequence[torch.Tensor]) -> tuple[str, Mapping[str, Any]]:
    return backward_module_path(), {}


def _switch(recorder: OpRecorder | None, phase: str, labeller: Labeller | None) -> None:
    if recorder is not None:
        recorder.phase = phase
        recorder.labeller = labeller


def _accepts(module: nn.Module, keyword: str) -> bool:
    parameters = inspect.signature(module.forward).parameters
    return keyword in parameters
