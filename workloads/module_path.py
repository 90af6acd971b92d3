"""Which ``nn.Module`` is running: the dotted path of the innermost module whose forward is active.

:class:`ModulePath` registers a forward pre-hook and a forward hook on every submodule of a root
(names from ``root.named_modules()``, e.g. ``model.layers.0.mlp.down_proj``; the root itself is
``""``) and keeps a stack of active modules. Lifecycle: hooks are installed on ``__enter__`` and
removed on ``__exit__``; in between, :attr:`current` is the innermost active module's path.

With ``label_autograd=True`` the hooks also label the autograd nodes each module creates
(``workloads.backward``), so that backward ops can be attributed to their forward's module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from workloads.backward import label_new_nodes

__all__ = ["ModulePath"]


class ModulePath:
    """Tracks the innermost running module of ``root`` (see the module doc)."""

    def __init__(self, root: nn.Module, *, label_autograd: bool = False):
        self.root = root
        self.label_autograd = label_autograd
        self._stack: list[str] = []
        self._handles: list[RemovableHandle] = []

    @property
    def current(self) -> str:
        """Path of the innermost module whose forward is running; ``""`` outside any submodule."""
        return self._stack[-1] if self._stack else ""

    def __enter__(self) -> ModulePath:
        for name, module in self.root.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._pusher(name),
                                                                  with_kwargs=True))
            # always_call: pop even when forward raises, so the stack stays balanced
            self._handles.append(module.register_forward_hook(self._pop, always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()

    def _pusher(self, name: str):
        def push(module: nn.Module, args: Any, kwargs: Any) -> None:
            if self.label_autograd and torch.is_grad_enabled():
                label_new_nodes((args, kwargs), self.current)  # made by the enclosing module
            self._stack.append(name)

        return push

    def _pop(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.label_autograd and torch.is_grad_enabled():
            label_new_nodes(output, self.current)
        if self._stack:
            self._stack.pop()
