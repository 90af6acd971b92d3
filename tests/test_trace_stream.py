"""The one-op-per-line trace layout: written and streamed back, other layouts, same errors."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest

from sim.errors import InputError
from sim.trace import Op, TensorMeta, Trace, _fast_op, _op_from_dict, read_trace, write_trace
from sim.trace_stream import iter_ops, read_meta, write_ops


def _op(i: int, deps=()) -> Op:
    return Op(id=i, name="aten::mm", category="gemm", flops=2.0 * 4 * 8 * 16, deps=tuple(deps),
              inputs=(TensorMeta((4, 16), "bf16"), TensorMeta((16, 8), "bf16")),
              outputs=(TensorMeta((4, 8), "bf16"),), dtype="bf16", measured_s=1e-5,
              attrs={"b": 1, "m": 4, "n": 8, "k": 16}, module=f"layers.{i}")


def _trace(n: int = 3) -> Trace:
    return Trace(ops=tuple(_op(i, [i - 1] if i else []) for i in range(n)),
                 meta={"model": "unit", "seq": 4})


def test_layout_is_one_json_document_with_one_op_per_line(tmp_path):
    path = write_trace(_trace(), tmp_path / "t.json")
    lines = path.read_text().splitlines()
    assert lines[0] == ('{"schema":"tksim.trace","version":1,"meta":{"model":"unit","seq":4},'
                        '"ops":[')
    assert [json.loads(line.rstrip(","))["id"] for line in lines[1:-1]] == [0, 1, 2]
    assert lines[-1] == "]}"
    assert json.loads(path.read_text()) == _trace().to_dict()


@pytest.mark.parametrize("name", ["t.json", "t.json.gz"])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_stream_round_trip(tmp_path, name, n):
    path = write_trace(_trace(n), tmp_path / name)
    assert tuple(iter_ops(path)) == _trace(n).ops
    assert read_meta(path) == {"model": "unit", "seq": 4}
    assert read_trace(path) == _trace(n)


def test_write_ops_takes_any_iterable(tmp_path):
    path = write_ops(tmp_path / "g.json.gz", (_op(i) for i in range(5)), meta={"k": 1})
    assert [op.id for op in iter_ops(path)] == [0, 1, 2, 3, 4]


def test_gzip_bytes_are_deterministic_and_name_no_file(tmp_path):
    a = write_trace(_trace(), tmp_path / "a.json.gz").read_bytes()
    b = write_trace(_trace(), tmp_path / "b.json.gz").read_bytes()
    assert a == b
    assert a[3] & 0x08 == 0  # FNAME flag clear: no temporary file name in the header
    assert a[4:8] == b"\0\0\0\0"  # mtime 0


@pytest.mark.parametrize("layout", ["pretty", "compact", "gzip-pretty"])
def test_other_layouts_are_parsed_whole(tmp_path, layout):
    data = _trace().to_dict()
    text = json.dumps(data, indent=None if layout == "compact" else 2)
    path = tmp_path / ("t.json.gz" if layout.startswith("gzip") else "t.json")
    path.write_bytes(gzip.compress(text.encode()) if layout.startswith("gzip") else text.encode())
    assert tuple(iter_ops(path)) == _trace().ops
    assert read_meta(path) == data["meta"]
    assert read_trace(path) == _trace()


def test_lines_that_leave_the_layout_midway_are_parsed_whole(tmp_path):
    path = write_trace(_trace(), tmp_path / "t.json")
    lines = path.read_text().splitlines()
    lines.insert(2, "")  # still valid JSON, no longer one op per line
    path.write_text("\n".join(lines))
    assert tuple(iter_ops(path)) == _trace().ops


def _line_layout(tmp_path, data) -> object:
    """Write ``data`` (a trace dict, possibly invalid) in the line layout, by hand."""
    header = {k: data[k] for k in ("schema", "version", "meta")}
    ops = ",\n".join(json.dumps(op, separators=(",", ":")) for op in data["ops"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(header, separators=(",", ":"))[:-1] + ',"ops":[\n' + ops + "\n]}\n")
    return path


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda d: d["ops"][1].update(deps=[7]), "ops[1].deps", "dangling"),
    (lambda d: d["ops"][0].update(deps=[1]), "ops[0].deps", "cyclic dependency: 0 -> 1 -> 0"),
    (lambda d: (d["ops"][1].update(deps=[2]), d["ops"][2].update(deps=[0])), "ops[1].deps",
     "depends on op 2, which is issued later"),
    (lambda d: d["ops"][1].update(deps=[1]), "ops[1].deps", "cyclic dependency: 1 -> 1"),
    (lambda d: d["ops"][2].update(id=0), "ops[2].id", "duplicate op id 0"),
    (lambda d: d["ops"][1].update(deps=[-1]), "ops[1].deps", "dangling"),
    (lambda d: d["ops"][0].update(flops=-1), "ops[0].flops", ">= 0"),
    (lambda d: d["ops"][0].update(flops=float("inf")), "ops[0].flops", "finite"),
    (lambda d: d["ops"][0].update(measured_s=True), "ops[0].measured_s", "wrong type"),
    (lambda d: d["ops"][1].update(inputs=[{"shape": [2.0], "dtype": "bf16"}]),
     "ops[1].inputs[0]", "expected {shape"),
    (lambda d: d["ops"][1].update(inputs=[{"shape": [2], "dtype": ["bf16"]}]),
     "ops[1].inputs[0].dtype", "unknown dtype"),
    (lambda d: d["ops"][1].update(category=["gemm"]), "ops[1].category", "wrong type"),
    (lambda d: d["ops"][0].update(colour="red"), "ops[0].colour", "unknown field"),
    (lambda d: d.update(version=2), "version", "unsupported"),
])
def test_streamed_errors_match_whole_file_errors(tmp_path, mutate, field, message):
    data = _trace().to_dict()
    mutate(data)
    streamed = _line_layout(tmp_path, data)
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(data, indent=1))
    errors = []
    for path in (streamed, whole):
        with pytest.raises(InputError) as info:
            list(iter_ops(path))
        errors.append(info.value)
    assert {e.field for e in errors} == {field}
    assert message in errors[0].message and errors[0].message == errors[1].message
    assert errors[0].source == str(streamed)


@pytest.mark.parametrize("op", [
    _op(3, [1, 2]),
    Op(id=0, name="aten::view", category="view"),
    Op(id=7, name="x", category="other", phase="backward", sync=True, num_kernels=0, stream=3,
       rank=2, measured_s=0, bytes_read=5, inputs=(TensorMeta((), "bool"),), attrs={"k": [1]}),
])
def test_fast_and_field_by_field_validation_build_the_same_op(op):
    data = json.loads(json.dumps(op.to_dict()))
    fast = _fast_op(data)
    assert fast is not None and fast == _op_from_dict(data, "t", "ops[0]") == op
    data["flops"] = True  # anything unusual is left to the field-by-field reader
    assert _fast_op(data) is None


def test_ops_before_a_bad_op_are_yielded_first(tmp_path):
    data = _trace().to_dict()
    data["ops"][2]["deps"] = [9]
    ops = iter_ops(_line_layout(tmp_path, data))
    assert [next(ops).id, next(ops).id] == [0, 1]
    with pytest.raises(InputError, match=r"ops\[2\].deps: dangling"):
        next(ops)


def test_ids_out_of_order_are_fine_when_deps_point_back(tmp_path):
    ops = (_op(5), _op(3, [5]), _op(4, [3, 5]), _op(0, [4]))
    path = write_ops(tmp_path / "t.json", ops)
    assert tuple(iter_ops(path)) == ops


@pytest.mark.parametrize(("text", "message"), [
    ('{"schema":"tksim.trace","version":1,"meta":{},"ops":[\n', "malformed JSON"),
    ('{"schema":"tksim.trace","version":1,"meta":{},"ops":[\n]}\nextra\n', "malformed JSON"),
    ('not json at all', "malformed JSON"),
])
def test_truncated_or_garbled_files(tmp_path, text, message):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        list(iter_ops(path))


def test_trailing_comma_before_the_closing_line_is_malformed(tmp_path):
    path = write_trace(_trace(), tmp_path / "t.json")
    path.write_text(path.read_text().replace("}\n]}", "},\n]}"))
    with pytest.raises(InputError, match="malformed JSON"):
        list(iter_ops(path))


def test_truncated_gzip_is_corrupt(tmp_path):
    path = write_trace(_trace(50), tmp_path / "t.json.gz")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match="corrupt or unreadable"):
        list(iter_ops(path))


def test_missing_file_fails_when_called(tmp_path):
    with pytest.raises(InputError, match="no such trace file"):
        iter_ops(tmp_path / "nope.json")
    with pytest.raises(InputError, match="no such trace file"):
        read_meta(tmp_path / "nope.json")


def test_missing_output_directory(tmp_path):
    with pytest.raises(InputError, match="output directory does not exist"):
        write_trace(_trace(), tmp_path / "no" / "t.json")


def test_streaming_memory_does_not_grow_with_the_trace(tmp_path):
    def peak_bytes(n: int) -> int:
        path = write_ops(tmp_path / f"t{n}.json.gz", (_op(i, [i - 1] if i else [])
                                                       for i in range(n)))
        tracemalloc.start()
        for _ in iter_ops(path):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak_bytes(500), peak_bytes(5000)
    assert large < 1.5 * small + 50_000  # a whole load of 5000 ops would hold megabytes
