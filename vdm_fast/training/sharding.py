"""Placement of the training state and batches on a device mesh: data parallel and FSDP.

The mesh has two axes, ('data', 'fsdp'). A batch is split along its first axis over both (every
device sees B / devices examples). Parameters, their EMA and Adam's moments are

- replicated when the 'fsdp' axis has size 1 (pure data parallelism: XLA all-reduces the
  gradient), or
- split over 'fsdp' along their largest axis divisible by its size (fully sharded data
  parallelism, ZeRO-3 style: XLA all-gathers each weight where it is used and reduce-scatters
  its gradient), replicated over 'data'.

Leaves too small or with no divisible axis stay replicated. Scalars (step, counts) are
replicated. Multi-host: `initialize_distributed` wraps `jax.distributed.initialize`; every
process builds the same mesh over all devices and feeds its own rows of the global batch
(`global_batch`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vdm_fast.sharding import fsdp_partition_spec
from vdm_fast.sharding import make_mesh as _make_mesh

AXES = ("data", "fsdp")
MIN_SHARD_SIZE = 1024  # leaves with fewer elements are replicated (sharding them costs more than it saves)


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None) -> bool:
    """Join a multi-host run via `jax.distributed.initialize` when asked to.

    Arguments fall back to $VDM_COORDINATOR_ADDRESS, $VDM_NUM_PROCESSES, $VDM_PROCESS_ID (JAX's
    own cluster auto-detection — SLURM, TPU pods, ... — is used when only
    $VDM_DISTRIBUTED=auto is set). Returns True when initialised; single-process runs do nothing.
    """
    coordinator_address = coordinator_address or os.environ.get("VDM_COORDINATOR_ADDRESS")
    num_processes = num_processes or _env_int("VDM_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("VDM_PROCESS_ID")
    if coordinator_address is None and os.environ.get("VDM_DISTRIBUTED") != "auto":
        if num_processes not in (None, 1):
            raise ValueError(f"num_processes={num_processes} but no coordinator address: give "
                             "--coordinator-address host:port (or $VDM_COORDINATOR_ADDRESS)")
        return False
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True


def _env_int(name):
    value = os.environ.get(name)
    return None if value in (None, "") else int(value)


def make_mesh(data: int = -1, fsdp: int = 1) -> jax.sharding.Mesh:
    """A ('data', 'fsdp') mesh of data x fsdp devices (`vdm_fast.sharding.make_mesh`); data = -1
    takes every device `fsdp` leaves. With data * fsdp below the device count, the first
    data * fsdp devices are used."""
    n = jax.device_count()
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"fsdp={fsdp}: expected a divisor of the {n} devices")
    if data == -1:
        data = n // fsdp
    if data < 1 or data * fsdp > n:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} = {data * fsdp} devices, but there are {n} "
                         "(use --data-parallel -1 to take all devices)")
    return _make_mesh((data, fsdp), AXES, devices=jax.devices()[: data * fsdp])


def leaf_spec(shape, fsdp_size: int) -> P:
    """PartitionSpec of one state leaf (`vdm_fast.sharding.fsdp_partition_spec` on 'fsdp')."""
    return fsdp_partition_spec(shape, fsdp_size, axis="fsdp", min_size=MIN_SHARD_SIZE)


def state_sharding(mesh, state):
    """Shardings of a train state (any pytree of arrays), leaf by leaf by `leaf_spec`."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), fsdp)), state)


def batch_sharding(mesh, batch):
    """Shardings of a batch dict: axis 0 split over every device ('data' and 'fsdp')."""
    return jax.tree.map(lambda x: NamedSharding(mesh, P(AXES)), batch)


def check_batch_size(batch_size: int, mesh) -> None:
    """Raise ValueError unless the batch splits evenly over the mesh's devices."""
    n = mesh.size
    if batch_size % n:
        raise ValueError(f"batch_size={batch_size}: expected a multiple of the {n} devices of the "
                         f"mesh {dict(mesh.shape)} (each device takes batch_size / {n} examples)")


def place(tree, shardings):
    """Put host arrays (identical on every process) on the mesh with the given shardings."""
    return jax.tree.map(lambda x, s: jax.device_put(x, s), tree, shardings)


def global_batch(local_batch, shardings, global_batch_size: int):
    """Assemble the global batch from this process's rows (multi-host), or place it (one host)."""
    if jax.process_count() == 1:
        return place(local_batch, shardings)
    return jax.tree.map(
        lambda x, s: jax.make_array_from_process_local_data(s, x, (global_batch_size,) + x.shape[1:]),
        local_batch, shardings)
