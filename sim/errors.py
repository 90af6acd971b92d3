"""Errors a user can act on: bad input named by file and field, reported on one line.

The CLI turns every :class:`InputError` into ``tksim: error: <file>: <field>: <message>`` and exit
code 2, never a traceback. Library code raises it at the boundary where input is read.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable

__all__ = ["InputError", "suggest", "exit_on_input_error"]


class InputError(Exception):
    """Bad user input: a malformed file, an unknown name, a missing or absurd field.

    ``source`` names the file (or the command-line flag) and ``field`` the key path inside it,
    e.g. ``InputError("must be > 0", source="hw_specs/h100.yaml", field="memory[2].bandwidth")``.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as one line: ``source: field: message``."""
        parts = [p for p in (self.source, self.field) if p]
        text = ": ".join([*parts, self.message])
        return " ".join(text.split())


def suggest(name: str, known: Iterable[str], *, limit: int = 3) -> str:
    """A "did you mean ...?" hint listing the closest known names (or all, if none is close)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=limit, cutoff=0.4)
    if close:
        return "did you mean " + ", ".join(close) + "?"
    return "known: " + ", ".join(known)


def exit_on_input_error(run: Callable[[], object]) -> object:
    """Run a command-line entry point (``python -m ...``): bad input ends it with one line on
    stderr (``error: <file>: <field>: <message>``) and exit status 2, not a traceback."""
    try:
        return run()
    except InputError as error:
        print(f"error: {error.one_line()}", file=sys.stderr)
        raise SystemExit(2) from None
