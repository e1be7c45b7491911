"""vdm_fast.network.remat: rematerialisation that keeps only block inputs, whatever the compiler
(issue 14: `jax.checkpoint` saved no memory on jax 0.10's CPU backend)."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.tiny_models import tiny_config
from vdm_fast.network import from_params
from vdm_fast.network.remat import remat
from vdm_ref.network import init


def _block(w, x, key, mask):
    h = x
    for i in range(4):
        h = jnp.tanh(h @ w + 0.1 * i)
    h = h + 0.01 * jax.random.normal(key, h.shape)  # a PRNG key and a bool mask pass through
    return x + jnp.where(mask[:, None], h, 0.0)


def _chain_loss(block, ws, x):
    key, mask = jax.random.key(0), jnp.arange(x.shape[0]) % 3 > 0
    for i, w in enumerate(ws):
        x = block(w, x, jax.random.fold_in(key, i), mask)
    return jnp.sum(x * x)


def _chain():
    return [jnp.full((64, 64), 0.01) + 0.002 * i for i in range(10)], jnp.ones((256, 64))


def test_same_values_and_gradients_as_the_plain_function():
    ws, x = _chain()
    want = jax.jit(jax.value_and_grad(lambda ws, x: _chain_loss(_block, ws, x), argnums=(0, 1)))(ws, x)
    got = jax.jit(jax.value_and_grad(lambda ws, x: _chain_loss(remat(_block), ws, x), argnums=(0, 1)))(ws, x)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)


def test_keeps_only_block_inputs_where_jax_checkpoint_may_keep_everything():
    """XLA's plan of temporaries for the chain's gradient: the rematerialised chain keeps each
    block's input instead of its four intermediates (jax 0.10's CPU backend gives
    `jax.checkpoint` the plain plan)."""
    ws, x = _chain()

    def temp(block):
        grad = jax.jit(jax.grad(lambda ws, x: _chain_loss(block, ws, x)))
        return grad.lower(ws, x).compile().memory_analysis().temp_size_in_bytes

    plain, ours = temp(_block), temp(remat(_block))
    assert ours < 0.6 * plain, (plain, ours)


def test_a_nan_cotangent_gives_nan_gradients():
    ws, x = _chain()
    g = jax.grad(lambda w: jnp.sum(remat(_block)(w, x, jax.random.key(0), jnp.ones(x.shape[0], bool))) * jnp.nan)(ws[0])
    assert np.isnan(np.asarray(g)).all()


def test_the_unet_with_remat_plans_less_and_computes_the_same_gradient():
    cfg = tiny_config(channel_mult=(1, 2), attn_resolutions=(4,), frames=4, image_size=8, dropout=0.1).unet
    params = init(cfg, 0)
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(2, 4, 8, 8, 1)), jnp.float32)
    logsnr = jnp.asarray([1.0, -2.0], jnp.float32)
    mask = jnp.asarray([[False, False, True, True], [False, False, False, False]])

    def loss(params, remat_):
        model = from_params(cfg, params, remat=remat_)
        return jnp.sum(model(z, logsnr, None, mask, key=jax.random.key(1)) ** 2)

    grads, plans = [], []
    for remat_ in (False, True):
        fn = jax.jit(jax.value_and_grad(lambda p: loss(p, remat_)))
        plans.append(fn.lower(params).compile().memory_analysis().temp_size_in_bytes)
        grads.append(fn(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    assert plans[1] < 0.8 * plans[0], plans
