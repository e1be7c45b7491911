"""Generation (vdm_fast.generation): the window planner, the tasks over the exact Gaussian oracle
and a tiny random U-Net — shapes, known frames kept, lengths, one block on the device at a time,
the same video from both backends, and clear errors before any sampling."""

import dataclasses
import functools

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_fast.generation import (
    Model,
    SamplerOptions,
    extend,
    guided_denoiser,
    interpolate,
    model_from_params,
    plan_windows,
    predict,
    sample,
    upsample,
)
from vdm_fast.generation import engine
from vdm_ref import configs as C
from vdm_ref.guidance import downsample_area
from vdm_ref.oracle import GaussianVideoOracle


class OracleDenoiser(eqx.Module):
    """The oracle's exact E[x | z_t] as a Model's denoiser (c ignored)."""

    oracle: GaussianVideoOracle = eqx.field(static=True)

    def __call__(self, z, logsnr, cond=None):
        return jnp.asarray(self.oracle.denoise(jnp.asarray(z, jnp.float32), jnp.asarray(logsnr, jnp.float32)),
                           jnp.float32)


def oracle_model(frames=4, size=4, rho_t=0.9):
    oracle = GaussianVideoOracle(shape=(frames, size, size, 1), rho_t=rho_t, rho_s=0.6)
    unet = C.UNetConfig(channels=8, channel_mult=(1,), attn_resolutions=(), head_dim=8, emb_dim=8,
                        frames=frames, image_size=size, in_channels=1, out_channels=1, norm_groups=2)
    config = C.Config("oracle", "gaussian", unet, C.DiffusionConfig(sampling_steps=16, gamma=0.1))
    return Model(config, OracleDenoiser(oracle)), oracle


@pytest.fixture(scope="module")
def oracle():
    return oracle_model()


#: The oracle's videos are Gaussian, not in [−1, 1]: no clipping of x̂ in the oracle tests.
Opts = functools.partial(SamplerOptions, clip_x=False)
FAST = Opts(steps=8, gamma=0.1)


# --- planning ---------------------------------------------------------------------------------


def test_extension_plan_conditions_each_block_on_the_last_context_frames():
    wins = plan_windows(64, 16, range(16), context_frames=8)
    assert [w.start for w in wins] == [8, 16, 24, 32, 40, 48]
    assert [w.boundary for w in wins] == [16, 24, 32, 40, 48, 56]
    assert all(w.size == 16 and len(w.known) == 8 and len(w.generate) == 8 for w in wins)
    # a length that is not a whole number of blocks: the last window is clamped, more context
    wins = plan_windows(30, 16, range(16), context_frames=8)
    assert [(w.start, len(w.known), w.generate) for w in wins] == [(8, 8, tuple(range(16, 24))),
                                                                   (14, 10, tuple(range(24, 30)))]


def test_plans_for_sampling_interpolation_and_upsampling():
    wins = plan_windows(40, 16, (), context_frames=8)  # sample + extend
    assert wins[0].start == 0 and not wins[0].conditional and wins[0].boundary is None
    assert [w.boundary for w in wins[1:]] == [16, 24, 32]
    wins = plan_windows(25, 16, range(0, 25, 4), context_frames=4)  # interpolation x4
    # 13-15 lie between known frames 12 and 16: the second window, which holds both, makes them
    assert wins[0].known == (0, 4, 8, 12) and wins[0].generate == (1, 2, 3, 5, 6, 7, 9, 10, 11)
    assert wins[1].start == 9 and wins[1].generate[:3] == (13, 14, 15) and {12, 16} <= set(wins[1].known)
    assert set(range(25)) == set().union(*[set(w.known) | set(w.generate) for w in wins])
    every = [i for w in wins for i in w.generate]
    assert len(every) == len(set(every)) == 25 - 7  # each unknown frame generated once
    for w in wins:  # no generated frame without an observation after it in its window, unless none follows
        after = [a for a in range(0, 25, 4) if a > max(w.generate)]
        assert not after or after[0] < w.stop, (w, after)
    wins = plan_windows(15, 8, (), context_frames=4, low_res=range(0, 15, 2))  # the cascade, x2 in time
    assert [(w.start, w.generate) for w in wins] == [(0, tuple(range(7))), (3, (7, 8, 9, 10)), (7, (11, 12, 13, 14))]
    wins = plan_windows(16, 16, (), context_frames=4, low_res=range(0, 16, 4))  # upsampling, Fig. 2
    assert len(wins) == 1 and wins[0].low_res == (0, 4, 8, 12) and wins[0].conditional


def test_plan_errors():
    with pytest.raises(ValueError, match="context_frames"):
        plan_windows(32, 16, range(16), context_frames=16)
    with pytest.raises(ValueError, match="outside"):
        plan_windows(8, 16, [9], context_frames=2)


# --- tasks on the exact oracle ------------------------------------------------------------------


def test_extend_keeps_the_given_frames_and_reaches_the_length(oracle):
    model, o = oracle
    x0 = o.sample(np.random.default_rng(0).standard_normal((3,) + o.shape)).astype(np.float32)
    out, wins = extend(model, 0, x0, 11, context_frames=2, options=FAST, return_windows=True)
    assert out.shape == (3, 11, 4, 4, 1) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, :4], x0)  # exactly, not approximately
    assert [w.boundary for w in wins] == [4, 6, 8, 10]
    same = extend(model, 0, x0, 11, context_frames=2, options=FAST)
    np.testing.assert_array_equal(out, same)  # the seed decides
    other = extend(model, 1, x0, 11, context_frames=2, options=FAST)
    assert np.abs(other[:, 4:] - out[:, 4:]).max() > 0.1


def test_only_one_block_is_on_the_device_whatever_the_length(oracle, monkeypatch):
    model, o = oracle
    shapes = []
    real = engine.sample_window

    def spy(model_, keys, shape, *args, **kwargs):
        shapes.append(shape)
        for k in ("x", "low_res"):
            if kwargs.get(k) is not None:
                assert kwargs[k].shape[1] == model_.frames
        return real(model_, keys, shape, *args, **kwargs)

    monkeypatch.setattr(engine, "sample_window", spy)
    x0 = np.zeros((2,) + o.shape, np.float32)
    for length, blocks in ((8, 2), (40, 18)):
        shapes.clear()
        out = extend(model, 0, x0, length, context_frames=2, options=Opts(steps=3))
        assert out.shape[1] == length and isinstance(out, np.ndarray)  # the video so far: on the host
        assert len(shapes) == blocks and set(shapes) == {(2, 4, 4, 4, 1)}


def test_reconstruction_guidance_beats_replacement_at_the_boundary(oracle):
    # Predict frames 2, 3 from frames 0, 1 of an oracle video: the exact conditional mean
    # E[x^b | x^a] is known. The squared error of the samples' mean, over tr(Cov[x^b | x^a]),
    # is ≈ 1/256 = 0.004 for an exact sampler (Monte-Carlo floor with 256 samples). Sec. 3.1's
    # claim, measured: reconstruction guidance (w_r = 5) ≈ 0.03, replacement ≈ 0.36 (its
    # samples ignore part of x^a). Bounds: 0.1 and 3x, well clear of both.
    model, o = oracle
    rng = np.random.default_rng(1)
    x_true = o.sample(rng.standard_normal((1,) + o.shape)).astype(np.float32)
    given = np.repeat(x_true, 256, axis=0)
    known = np.zeros(o.shape, bool)
    known[:2] = True
    mean, cov = o.conditional(x_true.astype(np.float64), known)
    bias = {}
    for method in ("reconstruction", "replacement"):
        opts = Opts(steps=32, gamma=0.1, method=method, w_r=5.0)
        out = predict(model, 3, given, given_frames=2, options=opts)
        np.testing.assert_array_equal(out[:, :2], given[:, :2])
        bias[method] = np.sum((out.mean(axis=0) - mean[0]) ** 2) / np.trace(cov)
    assert bias["reconstruction"] < 0.1
    assert bias["replacement"] > 3 * bias["reconstruction"]


def test_interpolate_keeps_every_kth_frame(oracle):
    model, o = oracle
    low = o.sample(np.random.default_rng(2).standard_normal((2,) + o.shape)).astype(np.float32)
    out = interpolate(model, 0, low, 3, options=FAST)
    assert out.shape == (2, 10, 4, 4, 1)
    np.testing.assert_array_equal(out[:, ::3], low)


def test_upsample_reproduces_the_low_resolution_video(oracle):
    # Eq. 8: the samples' area-downsampling should match the low-res input far better than
    # unconditional samples do (measured: ≈ 0.01 vs ≈ 0.15 mean squared error).
    model, o = oracle
    x = o.sample(np.random.default_rng(3).standard_normal((8,) + o.shape)).astype(np.float32)
    low = np.asarray(downsample_area(x, 2))
    opts = Opts(steps=16, gamma=0.1, w_r=5.0)
    out = upsample(model, 0, low, options=opts)
    free = sample(model, 0, batch_size=8, options=opts)
    err = np.mean((np.asarray(downsample_area(out, 2)) - low) ** 2)
    err_free = np.mean((np.asarray(downsample_area(free, 2)) - low) ** 2)
    assert out.shape == x.shape and err < 0.25 * err_free
    # with frameskip 2: a low-res video of 3 frames is every other frame of a 5-frame output
    out = upsample(model, 0, low[:, :3], frameskip=2, context_frames=1, options=opts)
    assert out.shape == (8, 5, 4, 4, 1)


def test_progress_bars_run(oracle, capsys):
    model, o = oracle
    out = extend(model, 0, np.zeros((1,) + o.shape, np.float32), 6, context_frames=2, options=Opts(steps=3),
                 progress=True)
    assert out.shape[1] == 6
    assert "extend" in capsys.readouterr().err


# --- errors before sampling ---------------------------------------------------------------------


@pytest.fixture
def no_sampling(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("sampling started despite bad input")

    monkeypatch.setattr(engine, "sample_window", fail)


def test_bad_inputs_raise_before_sampling(oracle, no_sampling):
    model, o = oracle
    v = np.zeros((1, 3, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="fewer than the 5 conditioning frames"):
        predict(model, 0, v, given_frames=5, length=4)
    with pytest.raises(ValueError, match="model was trained on 4x4"):
        extend(model, 0, np.zeros((1, 4, 8, 8, 1), np.float32), 8)
    with pytest.raises(ValueError, match="channels"):
        extend(model, 0, np.zeros((1, 4, 4, 4, 3), np.float32), 8)
    with pytest.raises(ValueError, match="has 1 frames: at least 2 are needed"):
        extend(model, 0, v[:, :1], 8)  # context 2 (half a block) > 1 frame
    with pytest.raises(ValueError, match="more frames than"):
        extend(model, 0, v, 3)
    with pytest.raises(ValueError, match="context_frames"):
        extend(model, 0, v, 8, context_frames=4)
    with pytest.raises(ValueError, match="factor"):
        interpolate(model, 0, v, 4)
    with pytest.raises(ValueError, match="reconstruction guidance"):
        upsample(model, 0, np.zeros((1, 4, 2, 2, 1)), options=Opts(method="replacement"))
    with pytest.raises(ValueError, match="divides"):
        upsample(model, 0, np.zeros((1, 4, 3, 3, 1)))
    with pytest.raises(ValueError, match="unconditional"):
        sample(model, 0, cond=np.ones((1, 10), np.float32))
    with pytest.raises(ValueError, match="method"):
        SamplerOptions(method="inpaint")


# --- a real network: both backends ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    cfg = C.get_preset("tiny")
    cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, frames=4, image_size=8, in_channels=1,
                                                            out_channels=1))
    from vdm_ref.network import init

    return cfg, init(cfg.unet, 0)


def test_fast_and_ref_engines_sample_the_same_draws(oracle):
    # The 'ref' backend runs vdm_ref's Python-loop samplers on the draws the 'fast' compiled loop
    # makes inside itself; with the exact oracle the two agree to float32 rounding (measured ≈ 1e-6).
    model, o = oracle
    ref = dataclasses.replace(model, backend="ref")
    x0 = o.sample(np.random.default_rng(4).standard_normal((2,) + o.shape)).astype(np.float32)
    opts = Opts(steps=4, gamma=0.1, w_r=2.0, corrector=True, loop="compiled")
    a = extend(model, 5, x0, 6, context_frames=2, options=opts)
    b = extend(ref, 5, x0, 6, context_frames=2, options=opts)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # the fast network in vdm_ref's Python loop (loop='auto' picks it for guided windows on CPU)
    c = extend(model, 5, x0, 6, context_frames=2, options=dataclasses.replace(opts, loop="python"))
    np.testing.assert_allclose(a, c, atol=1e-4)


@pytest.mark.slow
def test_fast_and_ref_backends_extend_to_the_same_video(tiny):
    # Same key -> same draws (the ref backend materialises the fast loop's in-loop draws); the
    # two differ by float32 rounding of two network implementations through 3 steps (measured
    # max |Δ| ≈ 1e-3; 5e-2 bounds it with room).
    cfg, params = tiny
    opts = Opts(steps=3, gamma=0.1, w_r=2.0, loop="compiled")
    out = {}
    for backend in ("fast", "ref"):
        m = model_from_params(cfg, params, backend=backend)
        first = sample(m, 0, batch_size=2, options=opts)
        out[backend] = extend(m, 1, first, 6, context_frames=2, options=opts)
    assert out["fast"].shape == (2, 6, 8, 8, 1)
    np.testing.assert_allclose(out["fast"], out["ref"], atol=5e-2)


def test_classifier_free_guidance_combines_conditional_and_null_predictions():
    # Eq. 6 in x-space: (1 + w) x̂(z, c) − w x̂(z, 0), with a denoiser whose output is Σc.
    class SumCond(eqx.Module):
        def __call__(self, z, logsnr, cond=None):
            s = 0.0 if cond is None else jnp.sum(cond, axis=1)
            return jnp.zeros_like(z) + jnp.reshape(s, (-1, 1, 1, 1, 1))

    model, _ = oracle_model()
    unet = dataclasses.replace(model.config.unet, conditioning="class", num_classes=3)
    m = Model(dataclasses.replace(model.config, unet=unet), SumCond())
    cond = jnp.asarray([[1.0, 0, 0], [0, 2.0, 0]])
    fn = guided_denoiser(m, cond, 1.5)
    x = fn(jnp.zeros((2, 4, 4, 4, 1)), jnp.zeros(2))
    np.testing.assert_allclose(np.asarray(x)[:, 0, 0, 0, 0], [2.5, 5.0], rtol=1e-6)
    fn = guided_denoiser(m, cond, 0.0)
    np.testing.assert_allclose(np.asarray(fn(jnp.zeros((2, 4, 4, 4, 1)), jnp.zeros(2)))[:, 0, 0, 0, 0], [1.0, 2.0])


def test_guided_step_has_no_conditional_around_the_backward_pass(oracle):
    # A lax.cond (on w_r != 0) around the network's vjp made each reconstruction-guided step ≈ 5x
    # slower on XLA CPU (mnist-small U-Net: 16 s vs 2.8 s per call); the backward pass is traced
    # plainly, and the engine skips it for replacement (w_r = 0) with a zero vjp instead.
    import jax

    from vdm_fast import conditioning, guidance

    model, o = oracle
    fn = guided_denoiser(model, None, 0.0)
    z, lam = jnp.zeros((1,) + o.shape), jnp.zeros(1)
    obs = conditioning.Observation(z, jnp.ones((1, 4, 1, 1, 1)).at[:, 2:].set(0.0))
    g = guidance.reconstruction_guided_denoiser(fn, obs, 2.0)
    assert "cond[" not in str(jax.make_jaxpr(lambda z_: g(z_, lam))(z))
    x0 = o.sample(np.random.default_rng(6).standard_normal((2,) + o.shape)).astype(np.float32)
    opts = Opts(steps=3, method="replacement")
    via_engine = predict(model, 0, x0, given_frames=2, options=opts)  # zero-vjp path
    keys = engine.window_keys(engine.as_key(0), 0)
    mask = np.zeros((1, 4, 1, 1, 1), np.float32)
    mask[:, :2] = 1
    direct = conditioning.sample_conditional(fn, jax.random.normal(keys[0], x0.shape), engine._grid(model, 3),
                                             keys[1], keys[3], conditioning.Observation(x0, mask), w_r=0.0,
                                             gamma=opts.gamma)
    # the same sampler and draws; two compiled programs differ by float32 fusion (measured 5e-5)
    np.testing.assert_allclose(via_engine, np.asarray(direct), atol=5e-4)


def test_clip_x_clips_values_but_keeps_the_guidance_gradient(oracle):
    # Static thresholding of x̂ to [−1, 1], straight-through: reconstruction guidance (Eq. 7)
    # differentiates the unclipped x̂, so it still acts where the model overshoots.
    import jax

    model, o = oracle
    z, lam = jnp.full((1,) + o.shape, 4.0), jnp.full((1,), 3.0)
    plain, clipped = guided_denoiser(model, None, 0.0), guided_denoiser(model, None, 0.0, clip_x=True)
    x = np.asarray(plain(z, lam))
    assert np.abs(x).max() > 1.5  # the oracle's x̂ leaves the data range here
    np.testing.assert_allclose(np.asarray(clipped(z, lam)), np.clip(x, -1, 1), atol=1e-6)
    w = jnp.asarray(np.random.default_rng(0).standard_normal(z.shape))
    g_plain = jax.grad(lambda z_: jnp.sum(w * plain(z_, lam)))(z)
    g_clip = jax.grad(lambda z_: jnp.sum(w * clipped(z_, lam)))(z)
    np.testing.assert_allclose(np.asarray(g_clip), np.asarray(g_plain), rtol=1e-5, atol=1e-6)
