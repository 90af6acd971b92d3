"""Mixture-of-experts routing as an explicit assumption, so that routing shapes are static.

Which expert a token goes to depends on the data, which fake tensors do not have (and which random
weights would not make realistic anyway). So capture replaces the expert dispatch of HF MoE blocks
(the ``*Experts`` modules of transformers 5, e.g. ``MixtralExperts``), in fake AND real mode so that
the two give the same trace, with one whose per-expert token counts come from an assumption:

- balanced (``skew`` = 0, the default): with T tokens, k experts per token and E experts, each
  expert gets T k / E tokens (the remainder spread over the first experts);
- Zipf skew (``skew`` = s > 0): expert e (0 = hottest) gets a share proportional to (e + 1)^-s,
  capped at T (a token picks k distinct experts), rounded by largest remainder.

The router still runs (its gate GEMM, softmax and top-k are real work); its choice is ignored. For
each expert with n_e > 0 tokens the replacement gathers the tokens' rows, runs the expert's
gate/up GEMM, activation and down GEMM, scales by the routing weights and adds the rows back
(``index_add_``): the same ops, FLOPs and bytes as HF's eager loop under the assumed counts.
Assignment: the T k (token, choice) slots, slot j = token j mod T, choice j // T, are dealt to the
experts in order, n_e consecutive slots each (n_e <= T, so a token never meets an expert twice).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from sim.errors import InputError

__all__ = ["MoeRouting", "tokens_per_expert", "apply_static_routing", "MAX_SKEW"]

#: Largest Zipf exponent accepted: at s = 20 the hottest expert already takes all it can.
MAX_SKEW = 20.0


@dataclass(frozen=True, slots=True)
class MoeRouting:
    """The routing assumption: ``skew`` = 0 balanced, else the Zipf exponent (see module doc)."""

    skew: float = 0.0

    @property
    def kind(self) -> str:
        return "balanced" if self.skew == 0 else "zipf"

    def describe(self, num_tokens: int, top_k: int, num_experts: int) -> dict:
        """``meta["moe"]``: the assumption and the counts it gives for ``num_tokens`` tokens."""
        return {"routing": self.kind, "skew": self.skew, "num_experts": num_experts,
                "top_k": top_k, "num_tokens": num_tokens,
                "tokens_per_expert": tokens_per_expert(num_tokens, top_k, num_experts,
                                                       self.skew)}


def tokens_per_expert(num_tokens: int, top_k: int, num_experts: int,
                      skew: float = 0.0) -> list[int]:
    """n_e for e = 0..E-1: sum T k, each <= T, shares proportional to (e + 1)^-skew."""
    total, cap = num_tokens * top_k, num_tokens
    counts = [0] * num_experts
    open_experts = list(range(num_experts))
    while total > 0 and open_experts:
        weights = [(e + 1) ** -skew for e in open_experts]
        shares = _largest_remainder(total, weights)
        total = 0
        for e, share in zip(open_experts, shares, strict=True):
            room = cap - counts[e]
            counts[e] += min(share, room)
            total += max(0, share - room)  # what the full experts could not take
        open_experts = [e for e in open_experts if counts[e] < cap]
    return counts


def _largest_remainder(total: int, weights: list[float]) -> list[int]:
    exact = [total * w / sum(weights) for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def apply_static_routing(model: nn.Module, routing: MoeRouting) -> int:
    """Replace the forward of every HF experts module in ``model``; returns how many.

    Raises :class:`InputError` for an experts layout this replacement does not cover.
    """
    count = 0
    for name, module in model.named_modules():
        if not _is_experts(module):
            continue
        _check_layout(name, module)
        module.forward = types.MethodType(partial(_static_experts_forward, routing=routing),
                                          module)
        count += 1
    return count


def _is_experts(module: nn.Module) -> bool:
    return (type(module).__name__.endswith("Experts") and hasattr(module, "down_proj")
            and hasattr(module, "num_experts") and isinstance(module.down_proj, nn.Parameter))


def _check_layout(name: str, module: nn.Module) -> None:
    layout = {"has_gate": True, "has_bias": False, "is_transposed": False,
              "is_concatenated": True, "has_post_expert_norm": False}
    for attribute, expected in layout.items():
        if getattr(module, attribute, expected) != expected:
            raise InputError(f"MoE experts module {name} ({type(module).__name__}) has "
                             f"{attribute}={not expected}, which static routing does not cover",
                             field="--hf-config")


def _static_experts_forward(self: nn.Module, hidden_states: torch.Tensor,
                            top_k_index: torch.Tensor, top_k_weights: torch.Tensor, *,
                            routing: MoeRouting) -> torch.Tensor:
    """HF's eager experts loop with the assumed counts (``top_k_index`` is ignored).

    hidden_states (T, h); top_k_weights (T, k); returns (T, h).
    """
    T, k = hidden_states.shape[0], top_k_weights.shape[-1]
    final = torch.zeros_like(hidden_states)  # (T, h)
    start = 0
    for expert, n in enumerate(tokens_per_expert(T, k, self.num_experts, routing.skew)):
        if n == 0:
            continue
        slots = torch.arange(start, start + n, device=hidden_states.device)  # (n,)
        token_idx, choice = slots % T, slots // T
        rows = hidden_states[token_idx]  # (n, h)
        gate_up = nn.functional.linear(rows, self.gate_up_proj[expert])  # (n, 2f)
        out = nn.functional.linear(self._apply_gate(gate_up), self.down_proj[expert])  # (n, h)
        out = out * top_k_weights[token_idx, choice, None]
        final.index_add_(0, token_idx, out.to(final.dtype))
        start += n
    return final
