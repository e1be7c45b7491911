"""Placing parameters and batches on a `jax.sharding.Mesh`: data parallelism and FSDP.

    mesh = make_mesh()                                  # all devices on one 'data' axis
    params = shard_params(params, mesh)                 # DP: every parameter replicated
    params = shard_params(params, mesh, fsdp=True)      # FSDP: large parameters split on 'data'
    batch = shard_batch(batch, mesh)                    # leading (batch) axis split on 'data'
    out = jax.jit(step)(params, batch)                  # XLA inserts the collectives

Meshes may have two axes, e.g. `make_mesh((2, 4), ("data", "fsdp"))`: batches split over
'data', parameters over 'fsdp' (`shard_params(..., axis="fsdp")`). Each helper takes any
pytree: the shared parameter dict, an Equinox module (non-array leaves are left alone), or a
batch tuple/dict.

FSDP rule (`fsdp_partition_spec`): a parameter with at least `min_size` elements is split over
the mesh axis along its largest dimension divisible by that axis' size (the earliest such
dimension on a tie); smaller or indivisible parameters are replicated.

Training (`vdm_fast.training`) uses the same functions on a ('data', 'fsdp') mesh
(`data_fsdp_mesh`): every batch split over both axes (`batch_sharding(mesh, axis=TRAIN_AXES)`,
each device takes B / devices examples), the parameters, their EMA and Adam's moments split over
'fsdp' by the FSDP rule (`param_shardings(state, mesh, fsdp=True, axis="fsdp")`; with
fsdp = 1 everything is replicated and XLA all-reduces the gradient). Multi-host:
`initialize_distributed` wraps `jax.distributed.initialize`; every process builds the same mesh
over all devices and feeds its own rows of the global batch (`global_batch`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


#: Parameters smaller than this stay replicated under FSDP (splitting them saves little memory
#: and costs a collective each).
FSDP_MIN_SIZE = 2**14

#: The axes of a training mesh: batches split over both, parameters over 'fsdp'.
TRAIN_AXES = ("data", "fsdp")


def make_mesh(shape: Sequence[int] | None = None, names: Sequence[str] = ("data",), *,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A device mesh with every axis of type Auto (what `eqx.filter_shard` and jit's sharding
    propagation expect; jax >= 0.12 defaults to Explicit).

    shape: the mesh shape (default: all devices on one axis); names: one name per axis;
    devices: default `jax.devices()`. Raises ValueError if the shape does not use exactly the
    devices given.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = (len(devices),) if shape is None else tuple(int(s) for s in shape)
    names = tuple(names)
    if len(shape) != len(names):
        raise ValueError(f"mesh shape {shape} and names {names}: expected one name per axis")
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"mesh shape {shape} holds {int(np.prod(shape))} devices: expected "
                         f"{len(devices)} (the devices given)")
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is not None:
        try:
            return jax.make_mesh(shape, names, axis_types=(axis_type.Auto,) * len(shape),
                                 devices=devices)
        except TypeError:  # a jax whose make_mesh lacks axis_types/devices
            pass
    return Mesh(np.asarray(devices, dtype=object).reshape(shape), names)


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy of an array on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, *, axis: str | tuple[str, ...] = "data") -> NamedSharding:
    """The sharding that splits an array's leading (batch) axis over mesh axis `axis` (a name,
    or a tuple of names to split over several axes at once, e.g. `TRAIN_AXES`)."""
    return NamedSharding(mesh, PartitionSpec(axis))


def _axis_size(mesh: Mesh, axis: str | tuple[str, ...]) -> int:
    names = (axis,) if isinstance(axis, str) else tuple(axis)
    return int(np.prod([mesh.shape[a] for a in names]))


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def shard_batch(batch, mesh: Mesh, *, axis: str | tuple[str, ...] = "data"):
    """Place every array of a pytree with its leading axis split over mesh axis `axis` (data
    parallelism); 0-d arrays are replicated. Raises ValueError when a batch size is not a
    multiple of the axis size."""
    n = _axis_size(mesh, axis)

    def place(x):
        if not _is_array(x):
            return x
        if np.ndim(x) == 0:
            return jax.device_put(x, replicated(mesh))
        if x.shape[0] % n:
            raise ValueError(f"batch array of shape {tuple(x.shape)}: expected a leading axis "
                             f"divisible by the {n} devices of mesh axis {axis!r}")
        return jax.device_put(x, batch_sharding(mesh, axis=axis))

    return jax.tree_util.tree_map(place, batch)


def fsdp_partition_spec(shape: Sequence[int], axis_size: int, *, axis: str = "data",
                        min_size: int = FSDP_MIN_SIZE) -> PartitionSpec:
    """The FSDP PartitionSpec of one parameter: split its largest dimension divisible by
    axis_size over `axis`, or replicate (PartitionSpec()) when it is small or indivisible."""
    shape = tuple(shape)
    if int(np.prod(shape)) < min_size or axis_size <= 1:
        return PartitionSpec()
    divisible = [d for d in range(len(shape)) if shape[d] % axis_size == 0]
    if not divisible:
        return PartitionSpec()
    dim = max(divisible, key=lambda d: (shape[d], -d))
    return PartitionSpec(*(axis if d == dim else None for d in range(len(shape))))


def _param_sharding(x, mesh, fsdp, axis, min_size):
    if not fsdp:
        return replicated(mesh)
    spec = fsdp_partition_spec(np.shape(x), mesh.shape[axis], axis=axis, min_size=min_size)
    return NamedSharding(mesh, spec)


def param_shardings(params, mesh: Mesh, *, fsdp: bool = False, axis: str = "data",
                    min_size: int = FSDP_MIN_SIZE):
    """The pytree of NamedShardings for `params` (arrays, or `jax.ShapeDtypeStruct`s: nothing
    allocated): replicated (fsdp False) or FSDP-split over mesh axis `axis` (see
    `fsdp_partition_spec`). Other leaves map to None."""
    return jax.tree_util.tree_map(
        lambda x: _param_sharding(x, mesh, fsdp, axis, min_size)
        if _is_array(x) or isinstance(x, jax.ShapeDtypeStruct) else None, params)


def shard_params(params, mesh: Mesh, *, fsdp: bool = False, axis: str = "data",
                 min_size: int = FSDP_MIN_SIZE):
    """Place a parameter pytree on the mesh: replicated for data parallelism, or split for FSDP
    (`param_shardings`). Works on the shared dict and on Equinox modules (non-array leaves are
    returned unchanged)."""
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, _param_sharding(x, mesh, fsdp, axis, min_size))
        if _is_array(x) else x, params)


# ---------------------------------------------------------------------------------------------
# Training meshes and multi-host runs


def data_fsdp_mesh(data: int = -1, fsdp: int = 1) -> Mesh:
    """`make_mesh((data, fsdp), TRAIN_AXES)` over the first data·fsdp devices; data = -1 takes
    every device `fsdp` leaves. Raises ValueError naming the sizes when they do not fit the
    devices."""
    n = jax.device_count()
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"fsdp={fsdp}: expected a divisor of the {n} devices")
    if data == -1:
        data = n // fsdp
    if data < 1 or data * fsdp > n:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} = {data * fsdp} devices, but there are {n} "
                         "(a data size of -1 takes all devices)")
    return make_mesh((data, fsdp), TRAIN_AXES, devices=jax.devices()[: data * fsdp])


#: Parts a one-device CPU step evaluates its batch in when not told (`cpu_batch_parts`): the two
#: halves share no data, so XLA's CPU runtime runs them side by side on the cores that one stream
#: of small operations leaves idle (docs/benchmarks.md "One device, the batch in two parts":
#: with `cpu_host.run_on_calling_thread`, x1.15 steps/s for mnist-small on 2 cores against two
#: CPU devices, the previous default).
CPU_BATCH_PARTS = 2


def cpu_batch_parts(mesh: Mesh, batch_size: int) -> int:
    """How many independent parts a training step evaluates each device's batch in when the user
    did not say (`vdm_fast.backend.in_parts`): `CPU_BATCH_PARTS` for a mesh of one CPU device on
    a machine with at least that many cores and a batch that splits evenly; 1 otherwise (several
    devices already run side by side; a GPU or TPU fills itself)."""
    if mesh.size != 1 or mesh.devices.flat[0].platform != "cpu":
        return 1
    n = CPU_BATCH_PARTS
    if (os.cpu_count() or 1) < n or batch_size % n:
        return 1
    return n


def batch_parts(mesh: Mesh, batch_size: int, parts: int | None = None) -> int:
    """The parts each device's batch is evaluated in: `parts`, or when None `cpu_batch_parts`.
    ValueError unless they split each device's share of the batch evenly."""
    parts = cpu_batch_parts(mesh, batch_size) if parts is None else parts
    share = batch_size // mesh.size
    if parts < 1 or share % parts:
        raise ValueError(f"expected a divisor of the {share} examples each of the {mesh.size} device(s) takes")
    return parts


def split_cpu(devices: int) -> None:
    """Expose the host CPU to JAX as `devices` devices (`jax_num_cpu_devices`; XLA_FLAGS on a jax
    without it). Must run before JAX's first operation: ValueError otherwise, naming the count
    JAX already started with."""
    if devices < 1:
        raise ValueError(f"{devices} CPU devices: expected >= 1")
    try:
        jax.config.update("jax_num_cpu_devices", devices)
    except AttributeError:  # a jax without the option: the flag XLA reads when the backend starts
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    except RuntimeError:
        raise ValueError(f"{devices} CPU devices: JAX has already started with "
                         f"{len(jax.devices('cpu'))}; split the CPU before any JAX operation") from None


def check_batch_size(batch_size: int, mesh: Mesh, *, axis: str | tuple[str, ...] = TRAIN_AXES) -> None:
    """Raise ValueError unless a global batch splits evenly over the devices of `axis`."""
    n = _axis_size(mesh, axis)
    if batch_size % n:
        raise ValueError(f"batch_size={batch_size}: expected a multiple of the {n} devices of the "
                         f"mesh {dict(mesh.shape)} (each device takes batch_size / {n} examples)")


def global_batch(local_batch, sharding: NamedSharding, global_batch_size: int):
    """The global batch on the mesh, from this process's rows (multi-host) or, on one process,
    from the whole batch (`jax.device_put`). Every array is placed by `sharding`."""
    if jax.process_count() == 1:
        return jax.device_put(local_batch, sharding)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, x, (global_batch_size,) + x.shape[1:]),
        local_batch)


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None) -> bool:
    """Join a multi-host run via `jax.distributed.initialize` when asked to.

    Arguments fall back to $VDM_COORDINATOR_ADDRESS, $VDM_NUM_PROCESSES, $VDM_PROCESS_ID (JAX's
    own cluster auto-detection — SLURM, TPU pods, ... — is used when only
    $VDM_DISTRIBUTED=auto is set). Returns True when initialised; single-process runs do nothing.
    """
    coordinator_address = coordinator_address or os.environ.get("VDM_COORDINATOR_ADDRESS")
    num_processes = num_processes or _env_int("VDM_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("VDM_PROCESS_ID")
    if not distributed_requested(coordinator_address, num_processes):
        return False
    if coordinator_address is None and os.environ.get("VDM_DISTRIBUTED") != "auto":
        raise ValueError(f"num_processes={num_processes} but no coordinator address: give "
                         "--coordinator-address host:port (or $VDM_COORDINATOR_ADDRESS)")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True


def distributed_requested(coordinator_address=None, num_processes=None) -> bool:
    """Whether a run asks to be multi-host: a coordinator address, more than one process, or
    VDM_DISTRIBUTED=auto (the arguments fall back to the environment as in
    `initialize_distributed`)."""
    coordinator_address = coordinator_address or os.environ.get("VDM_COORDINATOR_ADDRESS")
    num_processes = num_processes or _env_int("VDM_NUM_PROCESSES")
    return bool(coordinator_address or num_processes not in (None, 1)
                or os.environ.get("VDM_DISTRIBUTED") == "auto")


def _env_int(name):
    value = os.environ.get(name)
    return None if value in (None, "") else int(value)
