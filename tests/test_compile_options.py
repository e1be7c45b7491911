"""vdm_fast.compile_options: the XLA options of the compiled step and sampling loops (issue 14).

XLA_FLAGS is left as conftest sets it (it must hold when the backend starts: the sharding tests
need its host device count), and only extended where a test needs the user's own flag."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_fast import compile_options as co


def test_cpu_gets_the_options_and_the_switches_turn_them_off(monkeypatch):
    monkeypatch.delenv(co.ENV_VAR, raising=False)
    assert jax.default_backend() == "cpu"
    assert co.compiler_options() == co.CPU_OPTIONS
    monkeypatch.setenv(co.ENV_VAR, "default")
    assert co.compiler_options() is None
    monkeypatch.setenv(co.ENV_VAR, "ours")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type=dot")
    assert co.compiler_options() is None  # the user's own flag wins
    monkeypatch.setenv(co.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="VDM_XLA_CPU_OPTIONS='fast'"):
        co.compiler_options()


def test_an_xla_without_the_option_compiles_with_defaults(monkeypatch):
    monkeypatch.delenv(co.ENV_VAR, raising=False)
    monkeypatch.setattr(co, "CPU_OPTIONS", {"xla_cpu_no_such_option_here": "1"})
    co._supported.cache_clear()
    try:
        assert co.compiler_options() is None
    finally:
        co._supported.cache_clear()


def test_jit_with_the_options_computes_the_same_convolution_gradient(monkeypatch):
    monkeypatch.delenv(co.ENV_VAR, raising=False)

    def loss(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(y))

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 16, 8)) * 0.1, jnp.float32)
    ours = co.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    plain = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_throughput_compares_both_settings_in_one_process(capsys, monkeypatch):
    from vdm_fast.training.throughput import main

    monkeypatch.delenv(co.ENV_VAR, raising=False)
    main(["--preset", "tiny", "--steps", "1", "--xla-options", "both"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get("xla_options") for r in rows[:2]] == ["default", "ours"]
    assert rows[0]["compiler_options"] is None and rows[1]["compiler_options"] == co.CPU_OPTIONS
    ratio = rows[2]["step_time_ratio_default_over_ours"]
    assert ratio == rows[0]["seconds_per_step"] / rows[1]["seconds_per_step"] > 0
    assert co.ENV_VAR not in os.environ  # restored


def test_throughput_compares_the_step_without_and_with_materialised_inputs(capsys, monkeypatch):
    from vdm_fast.network import layers
    from vdm_fast.training.throughput import main

    monkeypatch.delenv(co.ENV_VAR, raising=False)
    main(["--preset", "tiny", "--steps", "1", "--materialise", "both"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get("materialise") for r in rows[:2]] == [False, True]
    ratio = rows[2]["step_time_ratio_unmaterialised_over_materialised"]
    assert ratio == rows[0]["seconds_per_step"] / rows[1]["seconds_per_step"] > 0
    assert layers.MATERIALISE_ON_CPU is True  # restored
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--xla-options", "both", "--materialise", "both"])


def test_each_setting_of_the_switches_gets_its_own_compiled_step(monkeypatch):
    """The step cache is keyed on the XLA options and the materialisation switch: before, a second
    setting in one process reused the first one's program (what `--xla-options both` compared)."""
    from vdm_fast import sharding as shd
    from vdm_fast import train as vt
    from vdm_fast.network import layers
    from vdm_ref.configs import get_preset
    from vdm_ref.network import init
    from vdm_ref.train import Recipe

    config = get_preset("tiny")
    mesh = shd.data_fsdp_mesh(1, 1)
    monkeypatch.delenv(co.ENV_VAR, raising=False)
    vt._sharded_step.cache_clear()
    settings = [("ours", True), ("default", True), ("ours", False), ("ours", True)]
    for env, materialise in settings:
        monkeypatch.setenv(co.ENV_VAR, env)
        monkeypatch.setattr(layers, "MATERIALISE_ON_CPU", materialise)
        vt.make_step(config, Recipe(), params=init(config.unet, 0), mesh=mesh)
    info = vt._sharded_step.cache_info()
    assert (info.misses, info.hits) == (3, 1)


def test_the_sampling_loop_also_runs_inside_a_callers_jit(monkeypatch):
    """JAX refuses compiler options on a nested jit: inside a trace the plain loop runs."""
    from vdm_fast.samplers import sample_ancestral

    monkeypatch.delenv(co.ENV_VAR, raising=False)
    grid = jnp.linspace(-5.0, 5.0, 4)

    def draw(z):
        return sample_ancestral(lambda z, lam: 0.5 * z, z, grid, jax.random.PRNGKey(0), gamma=0.1)

    z = jnp.ones((2, 3))
    np.testing.assert_allclose(np.asarray(jax.jit(draw)(z)), np.asarray(draw(z)), rtol=1e-5, atol=1e-6)


def _conv_after_norm(x_shape=(2, 3, 8, 8, 16), cout=8):
    """A Conv1x3x3 fed by SiLU(GroupNorm(x)), as in every residual block, and its inputs."""
    from vdm_fast.network.layers import Conv1x3x3, GroupNorm

    rng = np.random.default_rng(1)
    c = x_shape[-1]
    norm = GroupNorm(jnp.asarray(rng.normal(size=c), jnp.float32), jnp.asarray(rng.normal(size=c), jnp.float32), 4)
    conv = Conv1x3x3(jnp.asarray(rng.normal(size=(1, 3, 3, c, cout)) * 0.1, jnp.float32),
                     jnp.asarray(rng.normal(size=cout), jnp.float32))
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)

    def loss(conv, x):
        return jnp.sum(jnp.sin(conv(jax.nn.silu(norm(x)))))

    return conv, x, loss


def test_a_differentiated_convolution_input_is_materialised_through_a_conditional(monkeypatch):
    from vdm_fast.network import layers

    conv, x, loss = _conv_after_norm()
    assert "cond" not in str(jax.make_jaxpr(conv)(x))  # evaluation: the identity
    assert "cond" in str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(conv, x))
    ours = jax.jit(jax.grad(loss, argnums=(0, 1)))(conv, x)
    assert "conditional" in jax.jit(jax.grad(loss, argnums=(0, 1))).lower(conv, x).compile().as_text()
    monkeypatch.setattr(layers, "MATERIALISE_ON_CPU", False)
    assert "cond" not in str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(conv, x))
    plain = jax.jit(jax.grad(loss, argnums=(0, 1)))(conv, x)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ref", [1.0, float("nan")])
def test_materialised_is_the_identity_whichever_branch_the_predicate_takes(ref):
    from vdm_fast.network.layers import materialised

    x = jnp.arange(12.0).reshape(3, 4)
    r = jnp.full((2, 2), ref)
    y, pullback = jax.vjp(lambda x: materialised(x, r), x)  # the conditional's forward
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(pullback(jnp.ones_like(x) * 3)[0]), 3 * np.ones((3, 4)))
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda x: materialised(x, r))(x)), np.asarray(x))
