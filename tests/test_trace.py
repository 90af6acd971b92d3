"""Trace files: round trip, gzip, and one-line errors for every kind of bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from sim.errors import InputError
from sim.trace import Op, TensorMeta, Trace, read_trace, write_trace


def _trace():
    return Trace(ops=(
        Op(id=0, name="aten::mm", category="gemm", flops=2 * 4 * 8 * 16, bytes_read=4 * 128,
           bytes_written=4 * 32, inputs=(TensorMeta((4, 16), "fp32"), TensorMeta((16, 8), "fp32")),
           outputs=(TensorMeta((4, 8), "fp32"),), attrs={"m": 4, "n": 8, "k": 16},
           module="model.layers.0.mlp", measured_s=1e-5),
        Op(id=1, name="aten::gelu", category="elementwise", deps=(0,), flops=32,
           bytes_read=128, bytes_written=128),
    ), meta={"model": "unit"})


@pytest.mark.parametrize("name", ["t.json", "t.json.gz"])
def test_round_trip(tmp_path, name):
    path = write_trace(_trace(), tmp_path / name)
    assert read_trace(path) == _trace()


def test_gzip_is_deterministic(tmp_path):
    a = write_trace(_trace(), tmp_path / "a.json.gz").read_bytes()
    b = write_trace(_trace(), tmp_path / "b.json.gz").read_bytes()
    assert a == b and a[:2] == b"\x1f\x8b"


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _bad(tmp_path, mutate):
    data = _trace().to_dict()
    mutate(data)
    return _write(tmp_path, data)


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda d: d["ops"][1].update(deps=[7]), "ops[1].deps", "dangling"),
    (lambda d: d["ops"][0].update(deps=[1]), "ops[0].deps", "cyclic dependency: 0 -> 1 -> 0"),
    (lambda d: d["ops"][1].update(deps=[1]), "ops[1].deps", "cyclic"),
    (lambda d: d["ops"][0].update(flops=-1), "ops[0].flops", ">= 0"),
    (lambda d: d["ops"][0].update(flops=1e30), "ops[0].flops", "absurd"),
    (lambda d: d["ops"][0].pop("category"), "ops[0].category", "missing"),
    (lambda d: d["ops"][0].update(category="magic"), "ops[0].category", "unknown category"),
    (lambda d: d["ops"][0].update(colour="red"), "ops[0].colour", "unknown field"),
    (lambda d: d["ops"][0].update(dtype="fp7"), "ops[0].dtype", "unknown dtype"),
    (lambda d: d["ops"][1].update(id=0), "ops[1].id", "duplicate"),
    (lambda d: d.update(version=99), "version", "unsupported"),
    (lambda d: d.update(schema="other"), "schema", "expected"),
])
def test_bad_traces_name_file_and_field(tmp_path, mutate, field, message):
    path = _bad(tmp_path, mutate)
    with pytest.raises(InputError) as info:
        read_trace(path)
    assert info.value.field == field and info.value.source == str(path)
    assert message in info.value.message
    assert "\n" not in info.value.one_line()


def test_malformed_json(tmp_path):
    with pytest.raises(InputError, match="malformed JSON"):
        read_trace(_write(tmp_path, '{"schema": "tksim.trace", '))


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(b'{"schema"')[:-6])
    with pytest.raises(InputError, match="corrupt"):
        read_trace(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such trace file"):
        read_trace(tmp_path / "nope.json")
