"""The op timer's cost inside a step against its loop cost, and what it does to a replay."""

from __future__ import annotations

import pytest
import torch

from validation.op_timer_cost import TimerCost, main, replay_bias, timer_cost
from workloads.op_timer import timer_module


def test_the_replay_bias_is_the_in_situ_excess_over_the_subtracted_cost_per_step():
    cost = TimerCost(loop_s=0.6e-6, in_situ_s=0.9e-6, plain_wall_s=500e-6, events=100)
    assert replay_bias(cost) == pytest.approx(100 * 0.3e-6 / 500e-6)  # +6 %
    assert replay_bias(TimerCost(0.6e-6, 0.6e-6, 500e-6, 100)) == 0.0


def test_a_step_of_ten_ops_pays_the_timer_per_top_level_event():
    module = timer_module()
    if module is None:
        pytest.skip("no C++ toolchain to build the dispatcher timer here")
    x = torch.zeros(16)

    def step():
        for _ in range(10):
            torch.add(x, x)

    cost = timer_cost(step, module, rounds=2, steps=20)
    assert cost.events == 10 and cost.plain_wall_s > 0
    assert cost.loop_s > 0 and cost.in_situ_s > 0  # the timer costs something per event


def test_bad_flags_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--steps", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --steps: must be between 1 and 1000, got 0"
