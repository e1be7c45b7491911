"""The shifted cosine schedule (`--logsnr-shift`, issue 15): λ_s(t) = s − 2 log tan(a t + b) over the
same range, s = 0 being the paper's schedule bit for bit; one shift for training and sampling.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vdm_fast.schedule as FSch
from vdm_ref import schedule as RSch
from vdm_ref import train as ref_train
from vdm_ref.configs import DiffusionConfig, config_from_dict

from test_train_step import CONFIG, _batch, _params

T = np.linspace(0.0, 1.0, 201)


def test_no_shift_is_the_papers_schedule_bit_for_bit():
    b = math.atan(math.exp(-10.0))
    a = math.atan(math.exp(10.0)) - b
    want = -2.0 * np.log(np.tan(a * T + b))  # Sec. 2's cosine schedule over [−20, 20], written out
    assert np.array_equal(RSch.logsnr_schedule_cosine(T, shift=0.0), want)
    assert np.array_equal(RSch.logsnr_grid(16, shift=0.0), RSch.logsnr_grid(16))


@settings(deadline=None, max_examples=40)
@given(st.floats(-4.0, 4.0))
def test_the_shift_keeps_the_range_and_moves_the_curve(s):
    lam = RSch.logsnr_schedule_cosine(T, shift=s)
    np.testing.assert_allclose([lam[0], lam[-1]], [20.0, -20.0], atol=1e-9)
    assert np.all(np.diff(lam) < 0)
    np.testing.assert_allclose(RSch.t_from_logsnr_cosine(lam, shift=s), T, atol=1e-9)
    assert abs(lam[100] - s) < 1e-3  # λ(½) ≈ s
    # away from the ends the curve is the paper's moved by s (simple diffusion's λ + s)
    inner = (T >= 0.1) & (T <= 0.9)
    np.testing.assert_allclose(lam[inner], RSch.logsnr_schedule_cosine(T[inner]) + s, atol=0.02)


@settings(deadline=None, max_examples=20)
@given(st.floats(-4.0, 4.0))
def test_fast_shifted_schedule_agrees(s):
    t = np.linspace(0.02, 0.98, 49)
    want = RSch.logsnr_schedule_cosine(t, shift=s)
    np.testing.assert_allclose(np.asarray(FSch.logsnr_schedule_cosine(t, shift=s)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(FSch.t_from_logsnr_cosine(want, shift=s)), t, atol=1e-5)
    grid = FSch.logsnr_grid(8, shift=s)
    assert grid.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(grid), RSch.logsnr_grid(8, shift=s).astype(np.float32))


def _shifted(config, s):
    return dataclasses.replace(config, diffusion=dataclasses.replace(config.diffusion, logsnr_shift=s))


def test_the_shift_reaches_the_training_loss():
    """The loss of a shifted config is Eq. 2 at λ_s(t) for the same draws of t and ε."""
    from vdm_ref.losses import diffusion_loss, loss_weight_fn
    from vdm_ref.network import apply
    from vdm_ref.train import batch_condition, step_randomness

    batch = jax.tree.map(jnp.asarray, _batch(0))
    params = jax.tree.map(jnp.asarray, _params())
    key = ref_train.step_key(0, 0)
    # Min-SNR weights depend on λ (an untrained network's ε loss alone hardly does)
    config = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, loss_weight="min_snr"))
    u, tc = config.unet, config.train
    t, eps, _, _ = step_randomness(key, batch["x"].shape, 0.0)

    def predict(z, logsnr):
        return apply(params, u, z, logsnr, batch_condition(batch), batch["frame_mask"])

    got = {s: float(ref_train.loss_fn(params, _shifted(config, s), batch, key, train=False)) for s in (0.0, 2.0)}
    for s in (0.0, 2.0):
        want = diffusion_loss(predict, batch["x"], t, eps, target=u.target, logsnr_shift=s,
                              weight_fn=loss_weight_fn(tc.loss_weight, tc.min_snr_gamma, u.target))
        assert got[s] == pytest.approx(float(jnp.mean(want)), rel=1e-6)
    assert got[0.0] != pytest.approx(got[2.0], rel=1e-3)  # the shift really changes the λ drawn


def test_the_shift_reaches_the_sampling_grid():
    from vdm_fast.generation.engine import _grid
    from vdm_fast.training._sample import sample_videos

    config = _shifted(CONFIG, -1.5)
    model = type("M", (), {"config": config})()
    np.testing.assert_array_equal(_grid(model, 8), RSch.logsnr_grid(8, shift=-1.5).astype(np.float32))
    key = jax.random.PRNGKey(1)
    shifted = sample_videos(_params(), key, config=config, num=1, steps=3)
    plain = sample_videos(_params(), key, config=CONFIG, num=1, steps=3)
    assert not np.allclose(np.asarray(shifted), np.asarray(plain))


def test_the_flag_reaches_the_configuration_and_checkpoints_without_it_load():
    import tyro

    from vdm_fast.training.command import Train

    opts = tyro.cli(Train, args=["--logsnr-shift", "-1.5"]).options()
    assert opts.config.diffusion.logsnr_shift == -1.5
    assert Train().options().config.diffusion.logsnr_shift == 0.0
    saved = dataclasses.asdict(CONFIG)
    del saved["diffusion"]["logsnr_shift"]  # a checkpoint written before the option
    assert config_from_dict(saved).diffusion.logsnr_shift == 0.0
    with pytest.raises(ValueError, match="logsnr_shift"):
        DiffusionConfig(logsnr_shift=float("nan"))
