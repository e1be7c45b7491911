"""vdm_fast.sharding: a sharded network evaluation (DP, FSDP, data x fsdp) equals the
single-device one, on the 4 emulated CPU devices of conftest.py.

Tolerance: with parameters replicated (DP) each device runs the single-device program on its
examples; with FSDP XLA gathers the parameters before use. Either way the arithmetic per
example is the same float32 program up to fusion and reduction order, so outputs agree to
float32 rounding: asserted |sharded − single| ≤ 1e-5 · max(1, max |single|).
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from vdm_fast.network import from_params
from vdm_fast.sharding import (
    fsdp_partition_spec,
    make_mesh,
    param_shardings,
    shard_batch,
    shard_params,
)
from vdm_ref.configs import get_preset
from vdm_ref.network import init

TOL = 1e-5
CONFIG = dataclasses.replace(get_preset("tiny").unet, conditioning="class", num_classes=3,
                             channels=16, head_dim=8, emb_dim=32, norm_groups=4)
MIN_SIZE = 256  # small enough that the tiny network's convolutions really are split

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (emulated) devices")


def _inputs():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 6, 8, 8, 3)).astype(np.float32)
    logsnr = rng.uniform(-10, 10, size=4).astype(np.float32)
    cond = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    frame_mask = np.broadcast_to(np.arange(6) >= 4, (4, 6))
    return z, logsnr, cond, frame_mask


def _model():
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape),
                                    init(CONFIG, 0))
    return from_params(CONFIG, params)


@eqx.filter_jit
def _forward(model, z, logsnr, cond, frame_mask):
    return model(z, logsnr, cond, frame_mask)


_SINGLE = {}


def _single_device_output():
    if "out" not in _SINGLE:
        _SINGLE["out"] = np.asarray(_forward(_model(), *map(jnp.asarray, _inputs())))
    return _SINGLE["out"]


def _assert_close(out, expected):
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0,
                               atol=TOL * max(1.0, float(np.max(np.abs(expected)))))


def test_make_mesh_uses_every_device_on_named_auto_axes():
    mesh = make_mesh()
    assert mesh.shape == {"data": jax.device_count()}
    mesh2 = make_mesh((2, 2), ("data", "fsdp"))
    assert dict(mesh2.shape) == {"data": 2, "fsdp": 2}
    if hasattr(jax.sharding, "AxisType"):
        assert all(t == jax.sharding.AxisType.Auto for t in mesh2.axis_types)
    with pytest.raises(ValueError, match="holds 6 devices: expected 4"):
        make_mesh((3, 2), ("data", "fsdp"))


def test_fsdp_spec_splits_the_largest_divisible_axis():
    assert fsdp_partition_spec((3, 3, 64, 128), 4, min_size=1) == PartitionSpec(None, None, None, "data")
    assert fsdp_partition_spec((64, 6), 4, min_size=1) == PartitionSpec("data", None)
    assert fsdp_partition_spec((8, 8), 4, min_size=1) == PartitionSpec("data", None)  # tie: first
    assert fsdp_partition_spec((3, 5), 4, min_size=1) == PartitionSpec()  # indivisible
    assert fsdp_partition_spec((64, 64), 4, min_size=10**6) == PartitionSpec()  # small
    assert fsdp_partition_spec((64,), 4, axis="fsdp", min_size=1) == PartitionSpec("fsdp")


def test_shard_batch_rejects_an_indivisible_batch():
    with pytest.raises(ValueError, match="divisible by the 4 devices"):
        shard_batch(np.zeros((6, 2)), make_mesh())


def test_data_parallel_evaluation_equals_single_device():
    mesh = make_mesh()
    model = shard_params(_model(), mesh)
    batch = shard_batch(_inputs(), mesh)
    assert batch[0].sharding.spec == PartitionSpec("data")
    assert len(batch[0].addressable_shards) == 4
    _assert_close(_forward(model, *batch), _single_device_output())


def test_fsdp_evaluation_equals_single_device():
    mesh = make_mesh()
    model = shard_params(_model(), mesh, fsdp=True, min_size=MIN_SIZE)
    specs = [leaf.sharding.spec for leaf in jax.tree_util.tree_leaves(model)]
    assert any("data" in spec for spec in specs), "no parameter was split"
    out = _forward(model, *shard_batch(_inputs(), mesh))
    _assert_close(out, _single_device_output())


def test_data_by_fsdp_mesh_evaluation_equals_single_device():
    mesh = make_mesh((2, 2), ("data", "fsdp"))
    params = jax.tree_util.tree_map(np.asarray, init(CONFIG, 0))
    shardings = param_shardings(params, mesh, fsdp=True, axis="fsdp", min_size=MIN_SIZE)
    assert any("fsdp" in s.spec for s in jax.tree_util.tree_leaves(shardings))
    model = shard_params(_model(), mesh, fsdp=True, axis="fsdp", min_size=MIN_SIZE)
    out = _forward(model, *shard_batch(_inputs(), mesh, axis="data"))
    _assert_close(out, _single_device_output())
