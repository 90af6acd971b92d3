"""Calibrate a system's collectives on its own measurements (nccl-tests on a few of its GPUs).

The transferable A100 fit predicts a node tksim never saw from its spec alone; where a user can
run nccl-tests on the node, four parameters of the collective model can be measured there
instead (:mod:`sim.cost.collective`, :mod:`sim.cluster.comm`):

- ``link_efficiency``: the fraction of the scale-up link a long pipelined ring sustains;
- ``pipeline_fill_steps``: the ring's fill and drain, in steps (bus efficiency
  link_efficiency * s / (s + fill) for a collective of s steps);
- ``latency_scale`` and ``latency``: NCCL's own per-protocol latency model x scale + a constant.

:func:`fit_collectives` fits them on measured rows by robust least squares on log(predicted /
measured) (``soft_l1``, scale 10 %, within the bounds of ``validation.gpu_fit``'s collective
stage, from the A100 fit), pricing every row with the system's own topology and NCCL's
algorithm and protocol choice. :func:`calibrate_system` writes a copy of the system spec with a
cited ``collectives`` section; the simulator then uses these values for that system's
collectives and sends. The cluster validation checks the protocol: calibrated on the 2- and
4-GPU runs of a node, it predicts the 8-GPU runs (``docs/parallelism.md``).

Input CSV (one row per measured collective; nccl-tests ``-d`` names or tksim dtypes)::

    collective,num_gpus,bytes,time_us[,dtype]
    all_reduce,2,1048576,16.2,half

``collective`` is all_reduce / all_gather / reduce_scatter / alltoall (or tksim's allreduce,
...); ``bytes`` follows nccl-tests (all-gather: the gathered output); ``time_us`` (or
``seconds``) the measured time.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import least_squares

from sim.cluster.comm import collective_plan
from sim.cluster.system import COLLECTIVE_KEYS, SystemSpec, load_system, parse_system
from sim.cost.collective import COLLECTIVES
from sim.cost.gpu_params import A100_FIT, GpuParams
from sim.errors import InputError
from sim.files import write_atomic
from sim.spec_library import read_yaml
from sim.units import DTYPE_BYTES

__all__ = ["read_measurements", "fit_collectives", "predict_rows", "calibrate_system",
           "without_nvls", "FIT_BOUNDS"]

#: GpuParams field -> (low, high): the bounds of validation.gpu_fit's collective stage, with
#: the fill in ring steps.
FIT_BOUNDS = {"link_efficiency": (0.1, 1.0), "link_efficiency_drop": (0.0, 4.0),
              "collective_latency_s": (0.0, 1e-4), "collective_latency_scale": (0.1, 10.0)}
_KINDS = {"all_reduce": "allreduce", "all_gather": "allgather", "reduce_scatter": "reducescatter",
          "alltoall": "alltoall", "all_to_all": "alltoall", **{k: k for k in COLLECTIVES}}
_DTYPES = {"half": "fp16", "float": "fp32", "bfloat16": "bf16", "int8": "int8", "uint8": "uint8",
           "int32": "int32", "int64": "int64", "double": "fp64", **{d: d for d in DTYPE_BYTES}}


def read_measurements(path: str | Path) -> pd.DataFrame:
    """Rows (kind, num_gpus, bytes, seconds, dtype) of a measurement CSV (module doc); one-line
    errors naming the file and column."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", source=str(path))
    try:
        df = pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"not a CSV file ({str(exc).splitlines()[0]})", source=str(path)) from None
    for column in ("collective", "num_gpus", "bytes"):
        if column not in df:
            raise InputError("missing column", source=str(path), field=column)
    if "time_us" in df:
        seconds = pd.to_numeric(df["time_us"], errors="coerce") * 1e-6
    elif "seconds" in df:
        seconds = pd.to_numeric(df["seconds"], errors="coerce")
    else:
        raise InputError("missing column (time_us or seconds)", source=str(path), field="time_us")
    kinds = df["collective"].astype(str).str.strip().str.lower()
    unknown = sorted(set(kinds) - set(_KINDS))
    if unknown:
        raise InputError(f"unknown collective {unknown[0]!r}; one of {', '.join(_KINDS)}",
                         source=str(path), field="collective")
    dtypes = (df["dtype"].astype(str).str.strip().str.lower() if "dtype" in df
              else pd.Series(["bf16"] * len(df)))
    bad = sorted(set(dtypes) - set(_DTYPES))
    if bad:
        raise InputError(f"unknown dtype {bad[0]!r}", source=str(path), field="dtype")
    rows = pd.DataFrame({"kind": kinds.map(_KINDS),
                         "num_gpus": pd.to_numeric(df["num_gpus"], errors="coerce"),
                         "bytes": pd.to_numeric(df["bytes"], errors="coerce"),
                         "seconds": seconds, "dtype": dtypes.map(_DTYPES)})
    for column, low in (("num_gpus", 2), ("bytes", 1), ("seconds", 0)):
        bad = np.flatnonzero(rows[column].isna() | (rows[column] < low) | (rows[column] <= 0))
        if len(bad):
            raise InputError(f"row {bad[0] + 2}: must be a number >= {low}",
                             source=str(path), field=column)
    if (rows["bytes"] > 1e13).any() or (rows["seconds"] > 3600).any():
        raise InputError("absurd size or time", source=str(path), field="bytes")
    if rows.empty:
        raise InputError("no measurements", source=str(path))
    return rows


def predict_rows(system: SystemSpec, rows: pd.DataFrame, params: GpuParams) -> np.ndarray:
    """Predicted seconds of each row on ``system`` with ``params`` (its own collectives
    section ignored: ``params`` is what is being tried)."""
    bare = _without_calibration(system)
    out = np.empty(len(rows))
    for i, (kind, n, size, dtype) in enumerate(zip(rows["kind"], rows["num_gpus"], rows["bytes"],
                                                   rows["dtype"], strict=True)):
        plan = collective_plan(bare, kind, float(size), tuple(range(int(n))), params,
                               dtype=dtype)
        out[i] = plan.alone_s
    return out


def fit_collectives(system: SystemSpec, rows: pd.DataFrame,
                    start: GpuParams = A100_FIT) -> dict[str, float]:
    """The four collective parameters (GpuParams fields) fitted on ``rows`` (module doc), and
    ``nvls`` (1.0 or 0.0): on a switch that can reduce, whether the measurements fit better
    with NCCL's NVLS all-reduce available or without it (a stack whose NCCL, driver or fabric
    manager does not enable NVLS runs rings: the 4-GPU all-reduces tell the two apart)."""
    too_many = rows["num_gpus"] > system.num_gpus
    if too_many.any():
        raise InputError(f"a row uses {int(rows['num_gpus'][too_many].iloc[0])} GPUs; "
                         f"{system.name} has {system.num_gpus}", field="num_gpus")
    fits = [(*_fit(system, rows, start), 1.0)]
    if system.scale_up.in_network_reduction and (rows["kind"] == "allreduce").any():
        fits.append((*_fit(without_nvls(system), rows, start), 0.0))
    params, _, nvls = min(fits, key=lambda f: f[1])
    return {**params, "nvls": nvls}


def _fit(system: SystemSpec, rows: pd.DataFrame, start: GpuParams) -> tuple[dict, float]:
    names = list(FIT_BOUNDS)
    low = np.array([FIT_BOUNDS[n][0] for n in names])
    high = np.array([FIT_BOUNDS[n][1] for n in names])
    scale = high
    measured = rows["seconds"].to_numpy(float)

    def residuals(z: np.ndarray) -> np.ndarray:
        trial = start.replace(**dict(zip(names, z * scale, strict=True)))
        return np.log(predict_rows(system, rows, trial) / measured)

    x0 = np.clip([getattr(start, n) for n in names], low, high) / scale
    result = least_squares(residuals, x0, bounds=(low / scale, high / scale), loss="soft_l1",
                           f_scale=0.1, x_scale="jac")
    return {n: float(v) for n, v in zip(names, result.x * scale, strict=True)}, float(result.cost)


def calibrate_system(system_name: str, csv_path: str | Path, out_path: str | Path,
                     name: str | None = None) -> Path:
    """Fit the system's collectives on ``csv_path`` and write the calibrated system spec."""
    system = load_system(system_name)
    rows = read_measurements(csv_path)
    fitted = fit_collectives(system, rows)
    nvls = bool(fitted.pop("nvls"))
    errors = predict_rows(system if nvls else without_nvls(system), rows,
                          A100_FIT.replace(**fitted)) / rows["seconds"] - 1
    data = read_yaml(Path(system.path))
    new_name = name or f"{system.name}-calibrated"
    data["name"] = new_name
    data.pop("aliases", None)
    device = str(data.get("device", ""))
    if device.endswith((".yaml", ".yml")) and not Path(device).is_absolute():
        data["device"] = str(Path(system.device.path).resolve())  # the copy lives elsewhere
    field_key = {field: key for key, (field, _, _) in COLLECTIVE_KEYS.items()}
    units = {"collective_latency_s": lambda v: f"{round(v * 1e6, 4):g} us"}
    section = {"source": "collective_calibration"}
    for field, value in fitted.items():
        section[field_key[field]] = units.get(field, lambda v: round(v, 4))(value)
    if system.scale_up.in_network_reduction:
        section["nvls"] = nvls
    data["collectives"] = section
    data.setdefault("sources", {})["collective_calibration"] = (
        f"tksim calibrate --collectives {Path(csv_path).name} --system {system.name} "
        f"(file sha256 {_sha256(csv_path)[:16]}): {len(rows)} measured "
        f"collectives on {sorted(set(int(n) for n in rows['num_gpus']))} GPUs, fitted by "
        f"validation.collective_calibrate; residual median {np.median(np.abs(errors)):.1%}, "
        f"p90 {np.quantile(np.abs(errors), 0.9):.1%}.")
    text = (f"# {new_name}: {system.name} with collectives measured on it (tksim calibrate "
            "--collectives).\n" + yaml.safe_dump(data, sort_keys=False, width=100,
                                                  allow_unicode=True))
    out = Path(out_path)
    parse_system(yaml.safe_load(text), file=str(out))  # fails here, not at the next load
    return write_atomic(out, text)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _without_calibration(system: SystemSpec) -> SystemSpec:
    return dataclasses.replace(system, collectives={}) if system.collectives else system


def without_nvls(system: SystemSpec) -> SystemSpec:
    """``system`` with NCCL's NVLS unavailable (rings only)."""
    link = dataclasses.replace(system.scale_up, in_network_reduction=False)
    return dataclasses.replace(system, scale_up=link)
