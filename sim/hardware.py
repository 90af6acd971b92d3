"""Hardware specs: frozen records of a device, built once from a cited YAML file.

A :class:`HardwareSpec` describes one device (a GPU or a CPU): its compute (matrix engine and
vector units, peak FLOP/s per dtype), its memory hierarchy (innermost level first: on-chip,
L2/LLC, HBM/DRAM), the host-side overheads that frame every op (dispatch, launch, sync), its links
(NVLink, PCIe, Infinity Fabric), the efficiency parameters that calibration fits, and power.
All numbers are SI floats (unit in the name); the YAML format is documented in
``docs/spec-format.md`` and parsed by :func:`parse_spec`.

``num_units`` (SMs, CUs or CPU cores) is a parameter: :meth:`HardwareSpec.with_units` rescales the
peaks and per-unit capacities, e.g. to model a CPU run pinned to one core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from sim.cpu_calibration import CpuCalibration, read_cpu_calibration
from sim.errors import InputError
from sim.spec_reader import Reader, open_spec
from sim.units import Dimension

__all__ = [
    "SCHEMA",
    "Clocks",
    "Compute",
    "MemoryLevel",
    "HostOverheads",
    "Link",
    "Efficiency",
    "HardwareSpec",
    "parse_spec",
]

SCHEMA = "tksim.hw/1"
KINDS = ("gpu", "cpu")
MATRIX_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")

# Bounds that no real device of this decade crosses: a value beyond them is a unit slip.
_MAX_FLOPS = 1e17  # 100 PFLOP/s per device
_MAX_BW = 1e15  # 1 PB/s
_MAX_BYTES = 1e14  # 100 TB
_MAX_LATENCY_S = 1e-1
_MAX_OVERHEAD_S = 1.0


@dataclass(frozen=True)
class Clocks:
    """SM clocks of a GPU (Hz), for the two ways a measurement may run it.

    ``max_hz``: the highest SM clock, where application clocks can be locked (``nvidia-smi -lgc`` /
    ``-ac``); cycle-counted costs run at it when a dataset locked the clocks. ``tensor_hz``: the
    clock behind the datasheet matrix peaks (NVIDIA rates H100 SXM's 989.4 TFLOP/s at 1830 MHz,
    below its 1980 MHz maximum), taken as the highest clock a power-limited dense tensor-core load
    sustains: tensor work never runs faster than ``matrix_peak``, even with clocks locked higher.
    """

    max_hz: float
    tensor_hz: float


@dataclass(frozen=True)
class Compute:
    """Arithmetic of the whole device at ``num_units`` units (SMs / CUs / cores).

    ``matrix_flops_per_s`` is the dense matrix-engine peak per dtype (tensor cores, AMX, or the
    FMA units for a CPU without one); ``vector_flops_per_s`` the SIMT / SIMD peak for elementwise
    work. ``gemm_tile_m/n`` is the output tile one unit computes at a time (wave quantization).
    ``gemm_persistent``: the GEMM library runs persistent, warp-specialized kernels (CUTLASS 3.x
    on sm90/sm100: one CTA per SM loops over tiles, so the pipeline fills once and each tile's
    epilogue overlaps the next tile's main loop). Optional (GPUs): ``clocks`` (:class:`Clocks`) and
    ``sfu_ops_per_cycle_per_unit``, the special-function (exp2, rsqrt) results per cycle per SM
    that bound softmax in attention. ``gemm_menu``: the GEMM library's CTA tiles as (m, n, k,
    sharing) -- k the main loop's step, sharing the SMs that split one operand's loads (TMA
    multicast in a 2-CTA cluster, 2-SM MMAs); ``compute_capability`` (8.0, 9.0, ...) selects
    per-architecture software constants (NCCL's tuner); ``attention_kernel``: the fused
    attention the serving stack runs here (``fa2``: softmax between the MMAs; ``fa3`` /
    ``trtllm``: warp-specialized, softmax overlapped with the MMAs);
    ``attention_mma_efficiency``: the fraction of the matrix peak that kernel's prefill MMAs
    sustain, where its authors measured it (else the GEMM main loop's fitted efficiency).
    """

    num_units: int
    clock_hz: float
    matrix_flops_per_s: Mapping[str, float]
    vector_flops_per_s: Mapping[str, float]
    gemm_tile_m: int
    gemm_tile_n: int
    gemm_persistent: bool = False
    clocks: Clocks | None = None
    sfu_ops_per_cycle_per_unit: float | None = None
    gemm_menu: tuple[tuple[int, int, int, int], ...] = ()
    compute_capability: float | None = None
    attention_kernel: str | None = None
    attention_mma_efficiency: float | None = None

    def matrix_peak(self, dtype: str) -> float:
        """Dense matrix peak for ``dtype``, else that of the nearest wider dtype the spec lists."""
        return _peak(self.matrix_flops_per_s, dtype)

    def vector_peak(self, dtype: str) -> float:
        return _peak(self.vector_flops_per_s, dtype)


def _peak(table: Mapping[str, float], dtype: str) -> float:
    order = {"fp4": "fp8", "fp8": "fp16", "int8": "fp16", "fp16": "bf16", "bf16": "fp32",
             "tf32": "fp32", "fp32": "fp64", "int64": "fp32", "int32": "fp32", "bool": "fp32"}
    seen = dtype
    while seen not in table:
        if seen not in order:
            raise KeyError(f"no peak for dtype {dtype!r}")
        seen = order[seen]
    return table[seen]


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy.

    ``capacity_bytes`` and ``bandwidth_bytes_per_s`` are for the whole device. A level with
    ``bandwidth_per_unit_bytes_per_s`` (CPU caches and DRAM seen from one core) is limited to
    ``min(bandwidth, units * per_unit)`` when fewer units are used.
    """

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    latency_s: float
    bandwidth_per_unit_bytes_per_s: float | None = None
    per_unit_capacity: bool = False


@dataclass(frozen=True)
class HostOverheads:
    """Host-side costs around each op (seconds).

    ``dispatch_s``: framework work per op (PyTorch eager dispatch, argument checks).
    ``launch_s``: per kernel launch call. ``sync_s``: a host-device synchronization.
    ``completion_s``: per op completion on the device side (stream bookkeeping, tail).
    """

    dispatch_s: float
    launch_s: float
    sync_s: float
    completion_s: float


@dataclass(frozen=True)
class Link:
    """A link to peers or to the host; ``bandwidth_bytes_per_s`` per direction, per device.

    ``in_network_reduction``: the switch behind the link reduces and multicasts in the network
    (NVLink SHARP / NVLS on NVSwitch 3rd gen and later), which all-reduce can use.
    """

    name: str
    kind: str
    bandwidth_bytes_per_s: float
    latency_s: float
    in_network_reduction: bool = False


@dataclass(frozen=True)
class Efficiency:
    """Fractions of peak that well-shaped large kernels reach (calibrated per device)."""

    matrix: float
    vector: float
    memory: float


@dataclass(frozen=True)
class HardwareSpec:
    """A device: compute, memory hierarchy (innermost first), host overheads, links, power.

    ``cpu_calibration``: the fitted CPU sub-model of a calibrated CPU spec
    (:mod:`sim.cpu_calibration`), None for a datasheet-only spec.
    """

    name: str
    kind: str
    vendor: str
    description: str
    compute: Compute
    memory: tuple[MemoryLevel, ...]
    host: HostOverheads
    links: tuple[Link, ...]
    efficiency: Efficiency
    tdp_w: float | None
    sources: Mapping[str, str]
    aliases: tuple[str, ...] = ()
    path: str = ""
    datasheet_units: int = 0
    cpu_calibration: CpuCalibration | None = None

    @property
    def asynchronous(self) -> bool:
        """GPUs run ahead of the host; a CPU device executes on the host's own cores."""
        return self.kind == "gpu"

    @property
    def main_memory(self) -> MemoryLevel:
        return self.memory[-1]

    def memory_bandwidth(self, level: MemoryLevel) -> float:
        """Bandwidth of ``level`` available to this spec's ``num_units`` units."""
        if level.bandwidth_per_unit_bytes_per_s is None:
            return level.bandwidth_bytes_per_s
        units_bw = level.bandwidth_per_unit_bytes_per_s * self.compute.num_units
        return min(level.bandwidth_bytes_per_s, units_bw)

    def link(self, kind: str) -> Link | None:
        return next((lk for lk in self.links if lk.kind == kind), None)

    def with_units(self, num_units: int) -> HardwareSpec:
        """The same device using ``num_units`` units (e.g. a CPU run on 1 of 64 cores)."""
        if not 1 <= num_units <= self.datasheet_units:
            raise InputError(
                f"must be between 1 and {self.datasheet_units} for {self.name}, got {num_units}",
                field="--cores/units",
            )
        scale = num_units / self.compute.num_units
        compute = dataclasses.replace(
            self.compute,
            num_units=num_units,
            matrix_flops_per_s={k: v * scale for k, v in self.compute.matrix_flops_per_s.items()},
            vector_flops_per_s={k: v * scale for k, v in self.compute.vector_flops_per_s.items()},
        )
        memory = tuple(
            dataclasses.replace(m, capacity_bytes=m.capacity_bytes * scale)
            if m.per_unit_capacity
            else m
            for m in self.memory
        )
        return dataclasses.replace(self, compute=compute, memory=memory)


def parse_spec(data: object, *, file: str) -> HardwareSpec:
    """Build a :class:`HardwareSpec` from parsed YAML, validating every field (see module doc)."""
    top, sources = open_spec(data, file=file, schema=SCHEMA)
    kind = top.text("kind", choices=KINDS)
    compute = _read_compute(top.section("compute"))
    spec = HardwareSpec(
        name=top.text("name"),
        kind=kind,
        vendor=top.text("vendor"),
        description=top.text("description", required=False) or "",
        compute=compute,
        memory=_read_memory(top),
        host=_read_host(top.section("host")),
        links=tuple(_read_link(r) for r in top.sections("links", required=False)),
        efficiency=_read_efficiency(top.section("efficiency")),
        tdp_w=_read_power(top.section("power", required=False)),
        sources=sources,
        aliases=tuple(top.raw("aliases", list, required=False) or ()),
        path=file,
        datasheet_units=compute.num_units,
    )
    calibration = top.section("cpu_calibration", required=False)
    if calibration is not None:  # a CPU calibrated by validation.calibrate_cpu
        if kind != "cpu":
            raise top.error("cpu_calibration", "only a cpu spec can carry a CPU calibration")
        spec = dataclasses.replace(spec, cpu_calibration=read_cpu_calibration(
            calibration, tuple(level.name for level in spec.memory),
            {level.name: level.latency_s for level in spec.memory}))
    top.finish()
    return spec


def _read_compute(r: Reader) -> Compute:
    num_units = int(r.quantity("num_units", Dimension.COUNT, high=1e6))
    clock_hz = r.quantity("clock", Dimension.FREQUENCY, high=1e11)
    tile = r.section("gemm_tile")
    tile_m = int(tile.quantity("m", Dimension.COUNT, high=4096))
    tile_n = int(tile.quantity("n", Dimension.COUNT, high=4096))
    persistent = bool(tile.raw("persistent", bool, required=False) or False)
    menu = _read_gemm_menu(tile)
    tile.finish()
    per_cycle = num_units * clock_hz
    compute = Compute(
        num_units=num_units,
        clock_hz=clock_hz,
        matrix_flops_per_s=_read_peaks(r, "matrix", per_cycle),
        vector_flops_per_s=_read_peaks(r, "vector", per_cycle),
        gemm_tile_m=tile_m,
        gemm_tile_n=tile_n,
        gemm_persistent=persistent,
        clocks=_read_clocks(r.section("clocks", required=False)),
        sfu_ops_per_cycle_per_unit=r.quantity("sfu_ops_per_cycle_per_unit", Dimension.COUNT,
                                              high=1e4, required=False),
        gemm_menu=menu,
        compute_capability=r.quantity("compute_capability", Dimension.COUNT, high=100,
                                      required=False),
        attention_kernel=r.text("attention_kernel", required=False,
                                choices=("fa2", "fa3", "trtllm")),
        attention_mma_efficiency=r.quantity("attention_mma_efficiency", Dimension.RATIO,
                                            high=1.0, required=False),
    )
    r.finish()
    return compute


def _read_gemm_menu(tile: Reader) -> tuple[tuple[int, int, int, int], ...]:
    """``menu: [[m, n, k], [m, n, k, sharing], ...]``: positive integer CTA tile shapes."""
    entries = tile.raw("menu", list, required=False) or []
    menu = []
    for entry in entries:
        ok = (isinstance(entry, list) and len(entry) in (3, 4)
              and all(isinstance(x, int) and 0 < x <= 4096 for x in entry))
        if not ok:
            raise tile.error("menu", f"entries are [m, n, k] or [m, n, k, sharing], got {entry!r}")
        menu.append((*entry, 1) if len(entry) == 3 else tuple(entry))
    return tuple(menu)


def _read_clocks(r: Reader | None) -> Clocks | None:
    if r is None:
        return None
    clocks = Clocks(max_hz=r.quantity("max", Dimension.FREQUENCY, high=1e11),
                    tensor_hz=r.quantity("tensor", Dimension.FREQUENCY, high=1e11))
    if clocks.tensor_hz > clocks.max_hz:
        raise r.error("tensor", "the rated tensor clock cannot exceed the max clock")
    r.finish()
    return clocks


def _read_peaks(r: Reader, engine: str, units_times_clock: float) -> dict[str, float]:
    """Peaks either per device (``matrix_peak: {bf16: 989 TFLOP/s}``) or per unit and cycle
    (``matrix_flops_per_cycle_per_unit: {bf16: 1024}``), which scale with ``num_units``."""
    device = r.section(f"{engine}_peak", required=False)
    per_cycle = r.section(f"{engine}_flops_per_cycle_per_unit", required=False)
    if (device is None) == (per_cycle is None):
        raise r.error(f"{engine}_peak", f"give exactly one of {engine}_peak or "
                      f"{engine}_flops_per_cycle_per_unit")
    peaks: dict[str, float] = {}
    if device is not None:
        for dtype in device.unread():
            _check_dtype(device, dtype)
            peaks[dtype] = device.quantity(dtype, Dimension.FLOP_RATE, high=_MAX_FLOPS)
        device.finish()
    else:
        for dtype in per_cycle.unread():
            _check_dtype(per_cycle, dtype)
            flops = per_cycle.quantity(dtype, Dimension.COUNT, high=1e5)
            peaks[dtype] = flops * units_times_clock
        per_cycle.finish()
    if not peaks:
        raise r.error(f"{engine}_peak", "lists no dtype")
    return peaks


def _check_dtype(r: Reader, dtype: str) -> None:
    if dtype not in MATRIX_DTYPES:
        raise r.error(dtype, f"unknown dtype; use one of {', '.join(MATRIX_DTYPES)}")


def _read_memory(top: Reader) -> tuple[MemoryLevel, ...]:
    levels = []
    for r in top.sections("memory"):
        level = MemoryLevel(
            name=r.text("name"),
            capacity_bytes=r.quantity("capacity", Dimension.BYTES, high=_MAX_BYTES),
            bandwidth_bytes_per_s=r.quantity("bandwidth", Dimension.BANDWIDTH, high=_MAX_BW),
            latency_s=r.quantity("latency", Dimension.TIME, high=_MAX_LATENCY_S),
            bandwidth_per_unit_bytes_per_s=r.quantity(
                "bandwidth_per_unit", Dimension.BANDWIDTH, high=_MAX_BW, required=False
            ),
            per_unit_capacity=bool(r.raw("per_unit_capacity", bool, required=False) or False),
        )
        r.finish()
        levels.append(level)
    if not levels:
        raise top.error("memory", "needs at least one level (main memory last)")
    # Caches need not grow outward (Sapphire Rapids: 56 x 2 MiB of L2 exceed its 105 MB LLC),
    # but main memory, listed last, holds everything.
    main = levels[-1]
    for inner in levels[:-1]:
        if inner.capacity_bytes > main.capacity_bytes:
            raise top.error("memory", f"main memory (the last level, {main.name}) must be the "
                            f"largest, but {inner.name} is larger")
    return tuple(levels)


def _read_host(r: Reader) -> HostOverheads:
    host = HostOverheads(
        dispatch_s=r.quantity("dispatch", Dimension.TIME, high=_MAX_OVERHEAD_S, allow_zero=True),
        launch_s=r.quantity("launch", Dimension.TIME, high=_MAX_OVERHEAD_S, allow_zero=True),
        sync_s=r.quantity("sync", Dimension.TIME, high=_MAX_OVERHEAD_S, allow_zero=True),
        completion_s=r.quantity("completion", Dimension.TIME, high=_MAX_OVERHEAD_S,
                                allow_zero=True),
    )
    r.finish()
    return host


def _read_link(r: Reader) -> Link:
    link = Link(
        name=r.text("name"),
        kind=r.text("kind", choices=("nvlink", "pcie", "infinity_fabric", "upi", "infiniband",
                                     "ethernet")),
        bandwidth_bytes_per_s=r.quantity("bandwidth", Dimension.BANDWIDTH, high=_MAX_BW),
        latency_s=r.quantity("latency", Dimension.TIME, high=_MAX_LATENCY_S),
        in_network_reduction=bool(r.raw("in_network_reduction", bool, required=False) or False),
    )
    r.finish()
    return link


def _read_efficiency(r: Reader) -> Efficiency:
    eff = Efficiency(
        matrix=r.quantity("matrix", Dimension.RATIO, high=1.0),
        vector=r.quantity("vector", Dimension.RATIO, high=1.0),
        memory=r.quantity("memory", Dimension.RATIO, high=1.0),
    )
    r.finish()
    return eff


def _read_power(r: Reader | None) -> float | None:
    if r is None:
        return None
    tdp = r.quantity("tdp", Dimension.POWER, high=1e5)
    r.finish()
    return tdp
