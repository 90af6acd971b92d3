"""Benchmark: fake capture of full-size models, whole process (Python start and imports included).

Each case runs in a fresh subprocess, ``python -m sim.cli capture ... --fake -o <file>`` (or, on a
CLI without ``--fake``, the same call through ``workloads.capture_model``), and is measured from
the outside: wall time from spawn to exit (``time.perf_counter``) and the child's peak resident
memory (``ru_maxrss`` of the child's own rusage, from ``os.wait4``; what
``getrusage(RUSAGE_CHILDREN)`` reports when it is the only child). Run it from a small process
(a shell, not inside a big Python process): on Linux a child's peak RSS includes its parent's RSS
at fork time (the kernel keeps the pre-``exec`` high-water mark). Targets (issue 3, on a 2-core
machine): Llama-2-70B prefill over 2048 tokens <= 10 s and <= 1 GiB; a 70B training step
(forward, backward, AdamW) <= 30 s and <= 1.5 GiB.

Usage: ``python benchmarks/capture_70b.py [--cases 70b-prefill,70b-train] [--json out.json]``;
exits 1 when a case misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["CASES", "Case", "Result", "run_case", "main"]

MiB = 2**20
GiB = 2**30
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    """One capture: model, phase, b x s tokens, dtype; targets (None: report only)."""

    name: str
    model: str
    phase: str
    batch: int = 1
    seq: int = 2048
    dtype: str = "bf16"
    max_wall_s: float | None = None
    max_rss_bytes: float | None = None


@dataclass(frozen=True)
class Result:
    case: str
    wall_s: float
    peak_rss_bytes: float
    num_ops: int | None
    ok: bool


CASES = {case.name: case for case in (
    Case("70b-prefill", "llama-2-70b", "prefill", max_wall_s=10.0, max_rss_bytes=1 * GiB),
    Case("70b-train", "llama-2-70b", "train", max_wall_s=30.0, max_rss_bytes=1.5 * GiB),
    Case("7b-prefill", "llama-2-7b", "prefill"),
    Case("7b-train", "llama-2-7b", "train"),
)}

_CHILD = """
import json, sys
from sim.trace import write_trace
from workloads import capture_model
kwargs = json.loads(sys.argv[1]); output = kwargs.pop("output")
trace = capture_model(**kwargs, mode="fake")
write_trace(trace, output)
print(f"captured {len(trace)} ops")
"""


def _cli_has_fake() -> bool:
    """Whether ``tksim capture`` takes ``--fake`` (asked of a subprocess, as a user would)."""
    help_text = subprocess.run([sys.executable, "-m", "sim.cli", "capture", "--help"], cwd=ROOT,
                               capture_output=True, text=True).stdout
    return "--fake" in help_text


def _command(case: Case, output: str, *, use_cli: bool) -> list[str]:
    if use_cli:
        return [sys.executable, "-m", "sim.cli", "capture", "--model", case.model, "--phase",
                case.phase, "--batch", str(case.batch), "--seq", str(case.seq), "--dtype",
                case.dtype, "--fake", "-o", output]
    kwargs = {"name": case.model, "phase": case.phase, "batch": case.batch, "seq": case.seq,
              "dtype": case.dtype, "output": output}
    return [sys.executable, "-c", _CHILD, json.dumps(kwargs)]


def run_case(case: Case, *, use_cli: bool) -> Result:
    """Run ``case`` in a fresh process; wall time and the child's own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        command = _command(case, str(Path(tmp) / "trace.json.gz"), use_cli=use_cli)
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("w") as out, err_path.open("w") as err:
            start = time.perf_counter()
            child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
            wall_s = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = out_path.read_text(), err_path.read_text()
    if child.returncode != 0:
        raise RuntimeError(f"{case.name} failed ({child.returncode}):\n{stderr[-2000:]}")
    rss = usage.ru_maxrss * 1024  # Linux: KiB
    found = re.search(r"captured (\d+) ops", stdout)
    ok = ((case.max_wall_s is None or wall_s <= case.max_wall_s)
          and (case.max_rss_bytes is None or rss <= case.max_rss_bytes))
    return Result(case=case.name, wall_s=wall_s, peak_rss_bytes=rss,
                  num_ops=int(found.group(1)) if found else None, ok=ok)


def _row(case: Case, result: Result) -> str:
    target = ""
    if case.max_wall_s is not None:
        target = f"<= {case.max_wall_s:g} s, <= {case.max_rss_bytes / GiB:g} GiB"
    ops = f"{result.num_ops:>7,}" if result.num_ops is not None else "      ?"
    verdict = ("ok" if result.ok else "MISSED") if target else ""
    return (f"{case.name:12s} {case.model:12s} {case.phase:8s} {case.batch}x{case.seq:<5d} "
            f"{case.dtype:5s} {result.wall_s:7.2f} s {result.peak_rss_bytes / MiB:8.0f} MiB "
            f"{ops} ops  {target:28s} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; known: {', '.join(CASES)}")
    use_cli = _cli_has_fake()
    print(f"fake capture, whole process ({'CLI' if use_cli else 'Python API'}), "
          f"{os.cpu_count()} CPUs")
    results = []
    for name in names:
        results.append(run_case(CASES[name], use_cli=use_cli))
        print(_row(CASES[name], results[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
