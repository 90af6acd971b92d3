"""Describe torch tensors in tksim's terms: dtype names, shapes, bytes touched, storage identity.

Everything here is a pure function of one tensor's metadata (shape, strides, dtype, storage); no
data is read, so it works the same on real and on fake tensors.
"""

from __future__ import annotations

import math

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from sim.errors import InputError
from sim.trace import TensorMeta
from sim.units import DTYPE_BYTES

__all__ = ["TORCH_DTYPES", "dtype_name", "tensor_meta", "touched_numel", "touched_bytes",
           "is_dense", "storage_ref", "tensors_in"]

#: torch dtype -> tksim dtype name (the keys of ``sim.units.DTYPE_BYTES``).
TORCH_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float8_e4m3fn: "fp8",
    torch.float8_e5m2: "fp8",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
    # unsigned wider ints (e.g. the rng_state a CUDA flash attention returns): same width
    torch.uint16: "int16",
    torch.uint32: "int32",
    torch.uint64: "int64",
}


def dtype_name(dtype: torch.dtype) -> str:
    """The tksim name of a torch dtype; an :class:`InputError` for one a trace cannot express."""
    try:
        return TORCH_DTYPES[dtype]
    except KeyError:
        raise InputError(f"tensor dtype {dtype} has no tksim name (known: "
                         f"{', '.join(sorted(set(TORCH_DTYPES.values())))})") from None


def tensor_meta(t: torch.Tensor) -> TensorMeta:
    """Logical shape and dtype of ``t`` (a broadcast view keeps its broadcast shape)."""
    return TensorMeta(shape=tuple(t.shape), dtype=dtype_name(t.dtype))


def touched_numel(t: torch.Tensor) -> int:
    """Distinct elements an op reading all of ``t`` touches: dims with stride 0 count once.

    A bias ``(n,)`` expanded to ``(m, n)`` is read as n elements, not m*n.
    """
    if t.layout is not torch.strided:
        return t.numel()
    return math.prod(d for d, st in zip(t.shape, t.stride(), strict=True) if st != 0)


def touched_bytes(t: torch.Tensor) -> float:
    """Bytes of ``t``'s distinct elements (see :func:`touched_numel`)."""
    return touched_numel(t) * DTYPE_BYTES[dtype_name(t.dtype)]


def is_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s distinct elements are one row-major block (a kernel can stream it).

    Broadcast (stride 0) and size-1 dims are ignored: a broadcast bias is dense. A transpose, a
    permute or a slice of rows of a wider tensor is not: copying it reads strided memory.
    """
    if t.layout is not torch.strided:
        return True
    expected = 1
    for size, stride in reversed([(d, st) for d, st in zip(t.shape, t.stride(), strict=True)
                                  if d != 1 and st != 0]):
        if stride != expected:
            return False
        expected *= size
    return True


def storage_ref(t: torch.Tensor) -> StorageWeakRef | None:
    """A weak reference naming ``t``'s storage (shared by all views of it), or None if it has none.

    Holding the reference keeps the storage's C++ object (not its data) allocated, so its address,
    ``ref.cdata``, is not reused by a later storage while the reference lives: an exact identity.
    """
    if t.layout is not torch.strided:
        return None
    try:
        return StorageWeakRef(t.untyped_storage())
    except (NotImplementedError, RuntimeError):  # tensor subclasses without a storage
        return None


def tensors_in(value: object) -> list[torch.Tensor]:
    """Tensors in an aten argument or result: a tensor, or a (nested) list / tuple of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in tensors_in(item)]
    return []
