"""The training step: reference (jax.grad over vdm_ref) and fast (compiled, optax, sharded) agree.

One configuration, small enough to compile in seconds, with everything a step can involve:
class conditioning with conditioning dropout, joint image-video frames, network dropout,
weight decay, warm-up, clipping, the EMA warm-up.

Tolerances: both backends run float32. Adam's first update is g / (|g| + ε), which for a
coordinate with |g| near 0 turns round-off in g into an O(η) difference; the tests use
ε = 1e-3 (`RECIPE`) so the update is smooth in g and parameter differences stay at the
round-off of the gradient (measured ~1e-7; asserted 2e-5).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_fast import train as fast_train
from vdm_fast import sharding as shd
from vdm_fast.training.options import resolve_config
from vdm_ref import train as ref_train
from vdm_ref.support.eval.shift_coherence import temporal_coherence
from vdm_ref.network import init

# One level (the middle block carries the spatial and the masked temporal attention): compiles fast.
CONFIG = resolve_config("tiny", dict(
    channels=16, channel_mult=(1,), image_size=8, attn_resolutions=(), head_dim=4, emb_dim=16,
    frames=3, image_frames=1, in_channels=1, out_channels=1, conditioning="class", num_classes=3,
    dropout=0.1, cond_dropout=0.5, weight_decay=0.01, batch_size=4, learning_rate=1e-2))
RECIPE = ref_train.Recipe(warmup_steps=2, grad_clip=0.5, adam_eps=1e-3, ema_warmup=True)
ATOL = 2e-5
MIN_SIZE = 1024


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    b, f = CONFIG.train.batch_size, CONFIG.unet.frames + CONFIG.train.image_frames
    x = np.clip(rng.standard_normal((b, f, 8, 8, 1)), -1, 1).astype(np.float32)
    mask = np.zeros((b, f), bool)
    mask[:, CONFIG.unet.frames:] = True
    return {"x": x, "frame_mask": mask, "label": np.eye(3, dtype=np.float32)[rng.integers(0, 3, b)]}


def _params():
    return jax.tree.map(lambda a: np.asarray(a, np.float32), init(CONFIG.unet, 0))


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def fast_two_steps():
    """Two fast steps on one device (state after each, metrics) — shared by the tests below."""
    step = fast_train.make_train_step(CONFIG, RECIPE)
    state = fast_train.init_train_state(CONFIG, _params(), RECIPE)
    out = []
    for n in range(2):
        batch = jax.tree.map(jnp.asarray, _batch(n))
        state, metrics = step(state, batch, ref_train.step_key(0, n))
        out.append((fast_train.state_to_canonical(state), jax.tree.map(float, metrics)))
    return step, out


def test_reference_and_fast_train_steps_agree(fast_two_steps):
    _, fast = fast_two_steps
    state = ref_train.init_train_state(CONFIG, jax.tree.map(jnp.asarray, _params()))
    ref_step = jax.jit(lambda s, b, k: ref_train.train_step(s, b, CONFIG, RECIPE, k))
    for n in range(2):
        state, metrics = ref_step(state, jax.tree.map(jnp.asarray, _batch(n)), ref_train.step_key(0, n))
        fast_state, fast_metrics = fast[n]
        assert abs(float(metrics["loss"]) - fast_metrics["loss"]) <= 1e-5 * abs(fast_metrics["loss"])
        assert abs(float(metrics["grad_norm"]) - fast_metrics["grad_norm"]) <= 1e-4 * fast_metrics["grad_norm"]
        assert float(metrics["learning_rate"]) == pytest.approx(fast_metrics["learning_rate"], rel=1e-6)
        assert float(metrics["ema_decay"]) == pytest.approx(fast_metrics["ema_decay"], rel=1e-6)
        assert _max_diff(state["params"], fast_state["params"]) < ATOL
        assert _max_diff(state["ema"], fast_state["ema"]) < ATOL
        assert _max_diff(state["opt"]["mu"], fast_state["opt"]["mu"]) < ATOL
        assert int(state["opt"]["count"]) == int(fast_state["opt"]["count"]) == n + 1


@pytest.mark.parametrize("data,fsdp", [pytest.param(4, 1, marks=pytest.mark.slow), (2, 2)],
                         ids=["data-parallel-4", "fsdp-2x2"])
def test_sharded_step_matches_single_device(fast_two_steps, data, fsdp):
    """2x2 (the default run) splits the batch over 4 devices and the weights over 2; 4x1 (slow)
    is pure data parallelism."""
    _, single = fast_two_steps
    mesh = shd.data_fsdp_mesh(data, fsdp)
    state = fast_train.init_train_state(CONFIG, _params(), RECIPE)
    # MIN_SIZE below the default so that this small network's convolutions really are split
    state_sh = shd.param_shardings(state, mesh, fsdp=True, axis="fsdp", min_size=MIN_SIZE)
    batch_sh = shd.batch_sharding(mesh, axis=shd.TRAIN_AXES)
    step = fast_train.make_train_step(CONFIG, RECIPE, state_sharding=state_sh, batch_sharding=batch_sh)
    state = jax.device_put(state, state_sh)
    if fsdp > 1:  # FSDP really splits the large weights
        w = state["params"]["mid_res_0"]["conv_1"]["w"]
        assert w.sharding.shard_shape(w.shape) != w.shape
    for n in range(2):
        state, metrics = step(state, jax.device_put(_batch(n), batch_sh), ref_train.step_key(0, n))
        want_state, want = single[n]
        assert abs(float(metrics["loss"]) - want["loss"]) <= 1e-5 * abs(want["loss"])
        got = fast_train.state_to_canonical(state)
        assert _max_diff(got["params"], want_state["params"]) < ATOL
        assert _max_diff(got["ema"], want_state["ema"]) < ATOL


@pytest.mark.parametrize("compute_dtype,remat", [pytest.param(None, True, marks=pytest.mark.slow), ("bfloat16", False)],
                         ids=["remat", "bf16"])
def test_remat_and_bf16_steps_track_the_float32_step(fast_two_steps, compute_dtype, remat):
    """--remat recomputes the same float32 values (same update to round-off); --bf16 computes
    the network in bfloat16 (8 mantissa bits) but keeps parameters, Adam and EMA in float32, so
    its loss and update stay within bfloat16 round-off of the float32 step."""
    _, single = fast_two_steps
    step = fast_train.make_train_step(CONFIG, RECIPE, compute_dtype=compute_dtype, remat=remat)
    state = fast_train.init_train_state(CONFIG, _params(), RECIPE)
    want_state, want = single[0]
    state, metrics = step(state, jax.tree.map(jnp.asarray, _batch(0)), ref_train.step_key(0, 0))
    got = fast_train.state_to_canonical(state)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(got["params"]))
    if remat:
        assert abs(float(metrics["loss"]) - want["loss"]) <= 1e-5 * want["loss"]
        assert _max_diff(got["params"], want_state["params"]) < ATOL
    else:
        assert abs(float(metrics["loss"]) - want["loss"]) <= 0.03 * want["loss"]
        assert float(metrics["grad_norm"]) == pytest.approx(want["grad_norm"], rel=0.05)
        # the bf16 update differs from the float32 one by under 10 % in global L2 norm
        init, want_p = jax.tree.leaves(_params()), jax.tree.leaves(want_state["params"])
        err = np.sqrt(sum(np.sum((g - w) ** 2) for g, w in zip(jax.tree.leaves(got["params"]), want_p)))
        update = np.sqrt(sum(np.sum((w - i) ** 2) for w, i in zip(want_p, init)))
        assert err < 0.1 * update, (err, update)


def test_non_finite_loss_leaves_the_state_unchanged_and_so_does_the_next_step(fast_two_steps):
    """A NaN batch is not applied; the next, finite step given `proceed` = that step's
    metrics["applied"] (as the loop passes it, to read metrics one step late) is not applied
    either, and says so; with proceed True it is."""
    step, _ = fast_two_steps
    state = fast_train.init_train_state(CONFIG, _params(), RECIPE)
    before = fast_train.state_to_canonical(state)
    bad = _batch(0)
    bad["x"][0, 0, 0, 0, 0] = np.nan
    state, m0 = step(state, jax.tree.map(jnp.asarray, bad), ref_train.step_key(0, 0))
    assert not np.isfinite(float(m0["loss"])) and not bool(m0["applied"])
    after = fast_train.state_to_canonical(state)
    assert _max_diff(after, before) == 0.0 and int(after["opt"]["count"]) == 0
    state, m1 = step(state, jax.tree.map(jnp.asarray, _batch(1)), ref_train.step_key(0, 1), 0.0, m0["applied"])
    assert not bool(m1["applied"]) and np.isfinite(float(m1["loss"]))
    assert _max_diff(fast_train.state_to_canonical(state), before) == 0.0
    state, m2 = step(state, jax.tree.map(jnp.asarray, _batch(1)), ref_train.step_key(0, 1), 0.0, True)
    assert bool(m2["applied"]) and _max_diff(fast_train.state_to_canonical(state)["params"], before["params"]) > 0


@pytest.mark.parametrize("from_checkpoint", [False, True], ids=["new", "resumed"])
def test_the_placed_state_is_the_state(fast_two_steps, from_checkpoint):
    """`placed_train_state` (what make_step trains on: built on the devices leaf by leaf) has the
    structure, dtypes and shardings of `abstract_train_state`, every shard in a buffer of its own
    (the step donates them), and holds `init_train_state`'s values (new) or round-trips a
    checkpoint's canonical arrays (resumed)."""
    _, fast = fast_two_steps
    canon, _ = fast[1]
    mesh = shd.data_fsdp_mesh(2, 2)
    abstract = fast_train.abstract_train_state(CONFIG, RECIPE)
    state_sh = shd.param_shardings(abstract, mesh, fsdp=True, axis="fsdp", min_size=MIN_SIZE)
    assert state_sh["params"]["mid_res_0"]["conv_1"]["w"].spec != jax.sharding.PartitionSpec()  # FSDP splits it
    if from_checkpoint:
        got = fast_train.placed_train_state(CONFIG, RECIPE, state_sh, arrays=canon, step=2)
        assert _max_diff(fast_train.state_to_canonical(got), canon) == 0.0
        assert int(got["step"]) == 2
        assert all(int(c) == int(canon["opt"]["count"]) for c in jax.tree.leaves(got["opt"]) if c.ndim == 0)
    else:
        got = fast_train.placed_train_state(CONFIG, RECIPE, state_sh, params=init(CONFIG.unet, 0))
        want = fast_train.init_train_state(CONFIG, init(CONFIG.unet, 0), RECIPE)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    assert jax.tree.structure(got) == jax.tree.structure(abstract)
    for g, a, sh in zip(jax.tree.leaves(got), jax.tree.leaves(abstract), jax.tree.leaves(state_sh), strict=True):
        assert g.dtype == a.dtype and g.shape == a.shape and g.sharding == sh
    buffers = [s.data.unsafe_buffer_pointer() for leaf in jax.tree.leaves(got) for s in leaf.addressable_shards]
    assert len(set(buffers)) == len(buffers)


def test_make_step_compiles_ahead_and_steps_as_the_lazy_step():
    """With an example batch, make_step compiles before it places the state (compile_s is its
    time) and its step is that program: the same update as the step compiled at its first call."""
    mesh = shd.data_fsdp_mesh(2, 1)
    out = []
    for example in (_batch(0), None):
        impl = fast_train.make_step(CONFIG, RECIPE, params=init(CONFIG.unet, 0), mesh=mesh, example_batch=example)
        assert (impl.compile_s is not None) == (example is not None)
        state, m = impl.step(impl.state, impl.put_batch(_batch(0)), ref_train.step_key(0, 0))
        out.append((fast_train.state_to_canonical(state), float(m["loss"])))
    (ahead, loss_ahead), (lazy, loss_lazy) = out
    assert loss_ahead == loss_lazy and _max_diff(ahead, lazy) == 0.0


def test_schedules():
    assert ref_train.learning_rate_at(0, 1.0, 4) == pytest.approx(0.25)
    assert ref_train.learning_rate_at(3, 1.0, 4) == pytest.approx(1.0)
    assert ref_train.learning_rate_at(10, 1.0, 4) == pytest.approx(1.0)
    assert ref_train.ema_decay_at(1, 0.999) == pytest.approx(2 / 11)
    assert ref_train.ema_decay_at(10**6, 0.999) == pytest.approx(0.999)
    assert ref_train.ema_decay_at(1, 0.999, warmup=False) == pytest.approx(0.999)


def test_conditioning_dropout_gives_the_null_condition():
    cond = jnp.ones((3, 4))
    out = ref_train.drop_condition(cond, jnp.asarray([1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(out), [[1] * 4, [0] * 4, [1] * 4])
    tokens, mask = ref_train.drop_condition((jnp.ones((2, 5, 3)), jnp.ones((2, 5), bool)), jnp.asarray([0.0, 1.0]))
    assert float(jnp.abs(tokens[0]).max()) == 0.0 and bool(mask.all())


def test_temporal_coherence_scores_rigid_motion_high_and_noise_low():
    rng = np.random.default_rng(0)
    frame = -np.ones((16, 16))
    frame[4:9, 5:8] = 1.0
    moving = np.stack([np.roll(frame, t, axis=1) for t in range(6)])[..., None]
    assert temporal_coherence(moving) > 0.99
    noise = rng.standard_normal((6, 16, 16, 1))
    assert temporal_coherence(noise) < 0.5
    dataclasses.replace(RECIPE)  # the Recipe is a frozen dataclass
