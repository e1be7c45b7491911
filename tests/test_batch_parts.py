"""A training step that evaluates its batch in independent parts (`vdm_fast.backend.in_parts`,
`make_step(batch_parts=...)`, `--batch-parts`): the same loss and gradient as the whole batch,
and clear errors for a batch that does not split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.extend.core import jaxprs_in_params
from test_train_step import CONFIG, _batch

from vdm_fast import sharding as shd
from vdm_fast import train as fast_train
from vdm_fast.backend import in_parts, network_apply
from vdm_fast.training.options import resolve_config
from vdm_ref.network import init
from vdm_ref.train import Recipe, step_key

NO_DROPOUT = resolve_config("tiny", dict(
    channels=16, channel_mult=(1,), image_size=8, attn_resolutions=(), head_dim=4, emb_dim=16, frames=3,
    image_frames=1, in_channels=1, out_channels=1, conditioning="class", num_classes=3, dropout=0.0,
    cond_dropout=0.5, batch_size=4))


@pytest.fixture(scope="module")
def value_and_grads():
    params = jax.tree.map(jnp.asarray, init(NO_DROPOUT.unet, 0))
    batch = jax.tree.map(jnp.asarray, _batch(0))

    @jax.jit
    def both(params, batch, key):
        f = lambda parts: jax.value_and_grad(fast_train.loss_fn)(  # noqa: E731
            params, NO_DROPOUT, batch, key, batch_parts=parts)
        return f(1), f(2), f(4)

    return both(params, batch, step_key(0, 3))


def test_parts_give_the_whole_batch_loss_and_gradient(value_and_grads):
    (loss, grads), *parted = value_and_grads
    for parts_loss, parts_grads in parted:
        np.testing.assert_allclose(parts_loss, loss, rtol=1e-6)
        for (path, g), p in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(parts_grads)):
            np.testing.assert_allclose(p, g, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_parts_are_separate_evaluations_of_the_network():
    """Two parts trace the network twice, each on half the rows: twice the convolutions, each on
    2 examples (what lets XLA's CPU runtime run them side by side)."""
    params = jax.tree.map(jnp.asarray, init(NO_DROPOUT.unet, 0))
    z, cond = jnp.zeros((4, 4, 8, 8, 1)), jnp.eye(3)[jnp.array([0, 1, 2, 0])]

    def convs(parts):
        jaxpr = jax.make_jaxpr(lambda p: network_apply("fast", parts=parts)(p, NO_DROPOUT.unet, z, jnp.zeros(4),
                                                                             cond))(params)
        found = []

        def walk(jp):
            for eqn in jp.eqns:
                if eqn.primitive.name == "conv_general_dilated":
                    found.append(eqn.invars[0].aval.shape[0])
                for sub in jaxprs_in_params(eqn.params):
                    walk(sub)

        walk(jaxpr.jaxpr)
        return found

    whole, halves = convs(1), convs(2)
    assert len(halves) == 2 * len(whole) > 0
    assert {n * 2 for n in halves} == set(whole)


def test_a_batch_that_does_not_split_is_an_error():
    with pytest.raises(ValueError, match="does not split into 3 equal parts"):
        in_parts(lambda *a, **k: None, 3)(None, None, jnp.zeros((4, 1)), jnp.zeros(4))
    with pytest.raises(ValueError, match="expected >= 1"):
        in_parts(lambda *a, **k: None, 0)
    mesh = shd.data_fsdp_mesh(1, 1)
    with pytest.raises(ValueError, match="batch_parts=3: expected a divisor of the 4 examples"):
        fast_train.make_step(CONFIG, Recipe(), params=init(CONFIG.unet, 0), mesh=mesh, batch_parts=3)


def test_the_throughput_tool_refuses_parts_that_do_not_split_the_batch(capsys):
    from vdm_fast.training.throughput import main

    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--steps", "1", "--batch-parts", "3"])
    n = jax.device_count()  # the tool's mesh: every device of the process (conftest's 4 here)
    assert (f"--batch-parts 3: expected a divisor of the {4 // n} examples each of the {n} device(s) takes"
            in capsys.readouterr().err)
