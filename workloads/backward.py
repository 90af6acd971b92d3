"""Module attribution of backward ops: label autograd nodes by the module whose forward made them.

In backward, no module's forward is running, so forward hooks cannot say which module an op
belongs to (and ``ModTracker``-style backward hooks keep sibling modules active together: q/k/v
projections get each other's FLOPs). Instead, during a forward with autograd on,
:func:`label_new_nodes` stamps each new autograd node (``tensor.grad_fn`` and the unlabelled nodes
behind it) with the path of the module that created it, in ``node.metadata``; during backward,
:func:`backward_module_path` reads the label of the node the autograd engine is running.

``workloads.module_path.ModulePath(root, label_autograd=True)`` calls :func:`label_new_nodes` at
the two points where the creator is known: when a submodule is entered, nodes behind its inputs
that are still unlabelled were made by the enclosing module's own code; when it returns, nodes
behind its outputs that are still unlabelled were made by it (or by its own unlabelled code).
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_leaves

__all__ = ["label_new_nodes", "backward_module_path", "MODULE_KEY"]

#: Key of the module path in ``torch.autograd.graph.Node.metadata``.
MODULE_KEY = "tksim.module"


def label_new_nodes(value: object, path: str) -> None:
    """Stamp ``path`` on the unlabelled autograd nodes behind the tensors in ``value`` (a tensor
    or a pytree of them: tuple, list, dict, HF ``ModelOutput``). Labelled nodes stop the walk."""
    stack = [t.grad_fn for t in tree_leaves(value)
             if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        metadata = node.metadata
        if MODULE_KEY in metadata:
            continue
        metadata[MODULE_KEY] = path
        stack.extend(next_node for next_node, _ in node.next_functions)


def backward_module_path() -> str:
    """Module path of the autograd node now running in backward; ``""`` outside any node (the
    engine's seed gradient) or for a node made outside any labelled module."""
    node = torch._C._current_autograd_node()
    if node is None:
        return ""
    return node.metadata.get(MODULE_KEY, "")
