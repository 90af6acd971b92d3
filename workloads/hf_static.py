"""Make HF ``transformers``' data-dependent checks static, so fake and real captures match.

transformers looks at token data in a few places to pick a code path, and under fake tensors it
takes a different ("tracing") path instead, which changes the ops (an explicit attention mask
instead of ``is_causal``, grouped-query heads expanded). :func:`static_hf_checks` replaces those
checks, in real and fake mode alike, by the assumption a capture makes about its inputs:

- packed sequences (``masking_utils.find_packed_sequence_indices``, run when a forward has no
  attention mask and no KV cache, i.e. a training step): each row of the batch is one sequence.
  The replacement issues the same ops as the check (diff, compare, cumsum, the all-zero test) but
  does not read the answer back to the host (HF's ``.item()``, a sync) and answers "not packed".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import masking_utils

__all__ = ["static_hf_checks"]


def _unpacked_sequences(position_ids: torch.Tensor) -> None:
    """HF's packed-sequence check without its data-dependent branch: always "not packed"."""
    first_dummy_value = position_ids[:, :1] - 1
    position_diff = torch.diff(position_ids, prepend=first_dummy_value, dim=-1)
    packed_sequence_mask = (position_diff != 1).cumsum(-1)
    (packed_sequence_mask[:, -1] == 0).all()  # the check's work; its answer is the assumption
    return None


@contextmanager
def static_hf_checks() -> Iterator[None]:
    """Within the block, HF's data-dependent checks give the capture's assumptions."""
    original = masking_utils.find_packed_sequence_indices
    masking_utils.find_packed_sequence_indices = _unpacked_sequences
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = original
