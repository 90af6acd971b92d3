"""The seed's worked examples (docs/worked-examples.md) run as a test, block by block, in order."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "worked-examples.md"


def test_worked_examples_page_runs():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{PAGE.name}[block {number}]", "exec"), namespace)
    assert namespace["result"].total_s == 6000.0
    assert namespace["parallel"].total_s == 5.0
