"""Trace files on disk, written and read as a stream of ops (schema ``tksim.trace`` 1).

What is modeled: the file, not the trace. A training step of a 70B model is 10^5-10^6 ops; holding
its parse tree and its :class:`~sim.trace.Op` records at once costs gigabytes, so the file puts one
op per line and a reader can validate and use the ops one at a time. It is still one JSON
document, and gzip-compressed when the name ends in ``.gz``::

    {"schema":"tksim.trace","version":1,"meta":{...},"ops":[
    {"attrs":{},"bytes_read":...,"id":0,...},
    {"attrs":{},"bytes_read":...,"id":1,...}
    ]}

Writing (:func:`write_ops`): header line, one compact sorted-keys op per line, closing line; to a
temporary file renamed over the target (atomic), gzip with mtime 0 (same trace, same bytes).

Reading (:func:`iter_ops`, :func:`read_meta`, :func:`load_trace`): a reader opens the file (gzip
detected by its magic bytes), reads the header line, then yields ops line by line, each validated
by :func:`sim.trace.op_from_dict` and the graph checked incrementally (unique ids, every dep names
an earlier op; dangling and cyclic deps reported as by :func:`sim.trace.check_graph`). Memory is
constant for ids numbered 0..n-1 in order (a set holds any others). A file in another layout (e.g.
pretty-printed, or the single-line files of earlier tksim) is parsed whole instead, with the same
result; so is the rest of a file whose lines stop following the layout. Errors are
:class:`~sim.errors.InputError` naming the file and ``ops[i].<field>``; when streaming, an error
surfaces when the reader reaches the bad op, after the ops before it were yielded.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sim.errors import InputError
from sim.files import atomic_output
from sim.trace import (
    SCHEMA,
    VERSION,
    Op,
    Trace,
    check_header,
    find_cycle,
    forward_dep_message,
    op_from_dict,
    trace_from_dict,
)

__all__ = ["write_ops", "iter_ops", "read_meta", "load_trace", "no_cyclic_gc"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_DECODER = json.JSONDecoder()
_OPS_OPEN = '"ops":['
_CLOSE = "]}"
#: Longest header line read before deciding the file is in another layout (meta is small).
_HEADER_LIMIT_CHARS = 1 << 24
#: zlib level of written .gz files: gzip's default. Measured on a synthetic 100k-op trace (45 MB of
#: JSON, 2026-11, this 2-core VM): level 9 gives 1.13 MB in 0.30 s, level 6 1.36 MB in 0.15 s; the
#: JSON encoding (~1 s) dominates either way.
_GZIP_LEVEL = 9
_UNREADABLE = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def write_ops(path: str | Path, ops: Iterable[Op], *, meta: Mapping[str, Any] | None = None
              ) -> Path:
    """Write ``ops`` (any iterable, consumed once) and ``meta`` in the line layout, atomically."""
    path = Path(path)
    header = (f'{{"schema":{json.dumps(SCHEMA)},"version":{VERSION},'
              f'"meta":{_ENCODER.encode(dict(meta or {}))},{_OPS_OPEN}')
    with _atomic_text(path, compress=path.suffix == ".gz") as out:
        out.write(header)
        separator = "\n"
        for op in ops:
            out.write(separator)
            out.write(_ENCODER.encode(op.to_dict()))
            separator = ",\n"
        out.write(f"\n{_CLOSE}\n")
    return path


def iter_ops(path: str | Path) -> Iterator[Op]:
    """The ops of a trace file, validated, one at a time (the header is checked now)."""
    reader = _Reader(path)
    if reader.meta is None:
        reader.close()
        return iter(_parse_document(path).ops)
    return reader.ops()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` of a trace file, from its header line (a whole parse in another layout)."""
    reader = _Reader(path)
    reader.close()
    return reader.meta if reader.meta is not None else _parse_document(path).meta


def load_trace(path: str | Path) -> Trace:
    """The whole trace (what :func:`sim.trace.read_trace` returns), streamed when possible."""
    reader = _Reader(path)
    with no_cyclic_gc():
        if reader.meta is None:
            reader.close()
            return _parse_document(path)
        return Trace(ops=tuple(reader.ops()), meta=reader.meta)


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (restoring its state after): while a trace is built,
    ops hold no reference cycles and each full collection would rescan every op read so far
    (1.4 s -> 0.9 s for 100k ops); the micro-benchmarks time kernels with it paused too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- writing -------------------------------------------------------------------------------------

@contextmanager
def _atomic_text(path: Path, *, compress: bool) -> Iterator[IO[str]]:
    """A text stream to ``path``, written atomically (:func:`sim.files.atomic_output`)."""
    with atomic_output(path) as raw:
        # filename="": the gzip header would otherwise name the temporary file
        binary = (gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                compresslevel=_GZIP_LEVEL) if compress else raw)
        with binary, _text(binary) as text:
            yield text


def _text(binary: IO[bytes]) -> IO[str]:
    return io.TextIOWrapper(binary, encoding="utf-8", newline="\n", write_through=False)


# --- reading -------------------------------------------------------------------------------------

class _Reader:
    """One pass over a trace file.

    Lifecycle: created (file opened, header line read: ``meta`` is the validated meta, or None
    when the file is in another layout) -> :meth:`ops` iterated (closes the file at the end) or
    :meth:`close` called.
    """

    def __init__(self, path: str | Path):
        self.path, self.source = Path(path), str(path)
        self.file = _open_text(self.path)
        try:
            self.meta = self._header(self.file.readline(_HEADER_LIMIT_CHARS))
        except _UNREADABLE as exc:
            self.close()
            raise _corrupt(self.source, exc) from None
        except UnicodeDecodeError as exc:
            self.close()
            raise InputError(f"malformed JSON: {exc}", source=self.source) from None
        except InputError:
            self.close()
            raise

    def close(self) -> None:
        self.file.close()

    def _header(self, line: str) -> dict[str, Any] | None:
        text = line.strip()
        if not (text.startswith("{") and text.endswith(_OPS_OPEN)):
            return None
        try:
            data = json.loads(text + _CLOSE)
        except json.JSONDecodeError:
            return None
        if data.get("ops") != []:  # "ops" was not the last key: not our layout
            return None
        return check_header(data, source=self.source)

    def ops(self) -> Iterator[Op]:
        """Validated ops in file order; the rest parsed whole if the lines leave the layout."""
        try:
            count = yield from self._lines()
            if count is not None:  # the lines left the layout at op ``count``
                yield from _parse_document(self.path).ops[count:]
        except _UNREADABLE as exc:
            raise _corrupt(self.source, exc) from None
        except UnicodeDecodeError as exc:
            raise InputError(f"malformed JSON: {exc}", source=self.source) from None
        finally:
            self.close()

    def _lines(self) -> Iterator[Op]:
        """Yield ops while the lines follow the layout; return None at its end, else the count."""
        graph, source, index = _GraphCheck(), self.source, 0
        more: bool | None = None  # None: after the header; else: did the last op end with ","
        for line in self.file:
            text = line.rstrip()
            if text == _CLOSE and not more:
                return None if self._only_whitespace_left() else index
            if more is False:
                return index
            more = text.endswith(",")
            if more:
                text = text[:-1]
            try:
                item, end = _DECODER.raw_decode(text)
            except json.JSONDecodeError:
                return index
            if end != len(text):
                return index
            op = op_from_dict(item, source=source, index=index)
            if not graph.add(op):
                raise self._graph_error(op, index, graph)
            yield op
            index += 1
        return index  # no closing line: the whole parse reports the truncation

    def _only_whitespace_left(self) -> bool:
        return not self.file.read(1 << 16).strip()

    def _graph_error(self, op: Op, index: int, graph: _GraphCheck) -> InputError:
        """The error for ``op`` (``ops[index]``): it reuses an id or has a dep not yet seen."""
        if graph.duplicate:
            return InputError(f"duplicate op id {op.id}", source=self.source,
                              field=f"ops[{index}].id")
        dep = graph.unseen_dep
        later = self._later_deps()
        later[op.id] = op.deps
        where = f"ops[{index}].deps"
        if dep not in later:
            return InputError(f"dangling dependency on unknown op id {dep}", source=self.source,
                              field=where)
        cycle = find_cycle(later, op.id)  # earlier ops only point back: any cycle is in `later`
        return InputError(forward_dep_message(dep, cycle), source=self.source, field=where)

    def _later_deps(self) -> dict[int, tuple[int, ...]]:
        """id -> deps of the ops after the current line (to tell a forward dep from a dangling)."""
        later: dict[int, tuple[int, ...]] = {}
        for line in self.file:
            try:
                item = json.loads(line.rstrip().removesuffix(","))
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and type(item.get("id")) is int:
                deps = item.get("deps", [])
                later[item["id"]] = tuple(d for d in deps if type(d) is int) if isinstance(
                    deps, list) else ()
        return later


class _GraphCheck:
    """:func:`sim.trace.check_graph`, one op at a time: ids 0..k-1 seen in order take no memory."""

    def __init__(self) -> None:
        self.dense = 0  # every id < dense has been seen
        self.sparse: set[int] = set()  # ids seen out of that order
        self.duplicate = False
        self.unseen_dep: int | None = None

    def add(self, op: Op) -> bool:
        """Record ``op``; False (``duplicate`` or ``unseen_dep`` set) if it breaks the graph."""
        op_id, dense, sparse = op.id, self.dense, self.sparse
        if op_id < dense or op_id in sparse:
            self.duplicate = True
            return False
        for dep in op.deps:
            if not (0 <= dep < dense or dep in sparse):
                self.unseen_dep = dep
                return False
        if op_id == dense:
            dense += 1
            while dense in sparse:
                sparse.remove(dense)
                dense += 1
            self.dense = dense
        else:
            sparse.add(op_id)
        return True


def _open_text(path: Path) -> IO[str]:
    """``path`` as text, through gzip when it starts with gzip's magic bytes."""
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            return gzip.open(path, "rt", encoding="utf-8")
        return path.open(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such trace file", source=str(path)) from None
    except OSError as exc:
        raise _corrupt(str(path), exc) from None


def _parse_document(path: Path) -> Trace:
    """Parse a trace file of any layout whole (``json.loads``) and validate it."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except FileNotFoundError:
        raise InputError("no such trace file", source=source) from None
    except _UNREADABLE as exc:
        raise _corrupt(source, exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}", source=source) from None
    return trace_from_dict(data, source=source)


def _corrupt(source: str, exc: BaseException) -> InputError:
    return InputError(f"corrupt or unreadable trace: {exc}", source=source)
