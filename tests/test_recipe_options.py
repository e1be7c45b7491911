"""Recipe options of issue 15: the Min-SNR-γ loss weight and the cosine learning-rate decay.

Each is written once in vdm_ref (`losses.min_snr_weight`, `train.learning_rate_at`) and reached by
the fast step through the same functions; the tests check the formulas against their definitions,
the two backends' steps against each other with both options on, and the training loop's progress
p (fraction of --steps or of --minutes) and its resume rule.
"""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vdm_fast import train as fast_train
from vdm_fast.training.command import Train
from vdm_fast.training.loop import resumed_progress
from vdm_ref import losses
from vdm_ref import train as ref_train
from vdm_ref.configs import TrainConfig

from test_train_step import ATOL, CONFIG, _batch, _max_diff, _params

LOGSNR = np.linspace(-20.0, 20.0, 81)


def test_min_snr_weight_turns_each_target_into_min_snr_gamma():
    """Eq. 2's weight in x space is e^λ for the ε-MSE and e^λ + 1 for the v-MSE; times the Min-SNR
    factor it must be min(e^λ, γ) for both (Hang et al. 2023)."""
    snr = np.exp(LOGSNR)
    for gamma in (1.0, 5.0):
        want = np.minimum(snr, gamma)
        eps = losses.min_snr_weight(LOGSNR, gamma, "eps")
        v = losses.min_snr_weight(LOGSNR, gamma, "v")
        np.testing.assert_allclose(eps * snr, want, rtol=1e-12)
        np.testing.assert_allclose(v * (snr + 1.0), want, rtol=1e-12)
        # noisy steps keep the ε weighting; clean ones are capped
        assert np.all(eps[snr <= gamma] == 1.0) and np.all(eps[snr > gamma] < 1.0)
    with pytest.raises(ValueError, match="target='x'"):
        losses.min_snr_weight(LOGSNR, 5.0, "x")
    assert losses.loss_weight_fn("none") is None
    with pytest.raises(ValueError, match="loss_weight='snr'"):
        losses.loss_weight_fn("snr")


def test_weighted_loss_is_the_weight_times_the_plain_loss():
    rng = np.random.default_rng(0)
    x, eps = rng.standard_normal((2, 4, 3, 5, 5, 1))
    t = np.array([0.05, 0.3, 0.7, 0.95])
    wrong = rng.standard_normal(x.shape)
    plain = losses.diffusion_loss(lambda z, lam: wrong, x, t, eps)
    weighted = losses.diffusion_loss(lambda z, lam: wrong, x, t, eps, weight_fn=losses.loss_weight_fn("min_snr"))
    logsnr = losses.logsnr_schedule_cosine(t)
    np.testing.assert_allclose(weighted, plain * np.minimum(1.0, 5.0 * np.exp(-logsnr)), rtol=1e-12)
    assert weighted[-1] == plain[-1] and weighted[0] < plain[0]  # t = 0.05 is nearly clean


def test_cosine_decay_of_the_learning_rate():
    lr = ref_train.learning_rate_at
    assert lr(10, 1.0, 4, "cosine", 0.0) == pytest.approx(1.0)
    assert lr(10, 1.0, 4, "cosine", 0.5) == pytest.approx(0.5)
    assert lr(10, 1.0, 4, "cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr(10, 1.0, 4, "cosine", 1.7) == pytest.approx(0.0, abs=1e-12)  # p clipped
    assert lr(0, 1.0, 4, "cosine", 0.25) == pytest.approx(0.25 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr(10, 1.0, 4, "none", 0.9) == 1.0  # no decay ignores p
    p = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(np.asarray(lr(10, 2.0, 0, "cosine", p)),
                               [lr(10, 2.0, 0, "cosine", float(q)) for q in np.linspace(0, 1, 11)], atol=1e-6)
    with pytest.raises(ValueError, match="lr_decay='linear'"):
        ref_train.Recipe(lr_decay="linear")
    with pytest.raises(ValueError, match="lr_decay='step'"):
        TrainConfig(lr_decay="step")
    with pytest.raises(ValueError, match="min_snr_gamma"):
        TrainConfig(min_snr_gamma=0.0)


def test_reference_and_fast_steps_agree_with_min_snr_and_decay():
    config = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, loss_weight="min_snr",
                                                                   min_snr_gamma=2.0, lr_decay="cosine"))
    recipe = ref_train.Recipe(warmup_steps=0, grad_clip=0.5, adam_eps=1e-3, lr_decay="cosine")
    batch = jax.tree.map(jnp.asarray, _batch(0))
    key = ref_train.step_key(0, 0)
    fast_state, fast_m = fast_train.make_train_step(config, recipe)(
        fast_train.init_train_state(config, _params(), recipe), batch, key, 0.6)
    ref_state, ref_m = jax.jit(lambda s, b, k, p: ref_train.train_step(s, b, config, recipe, k, p))(
        ref_train.init_train_state(config, jax.tree.map(jnp.asarray, _params())), batch, key, 0.6)
    want_lr = 1e-2 * 0.5 * (1 + math.cos(0.6 * math.pi))
    assert float(fast_m["learning_rate"]) == pytest.approx(want_lr, rel=1e-5)
    assert float(ref_m["learning_rate"]) == pytest.approx(want_lr, rel=1e-5)
    assert abs(float(ref_m["loss"]) - float(fast_m["loss"])) <= 1e-5 * abs(float(fast_m["loss"]))
    assert _max_diff(ref_state["params"], fast_train.state_to_canonical(fast_state)["params"]) < ATOL
    # and the weight really is in the loss: the unweighted loss of the same draws is larger
    plain = ref_train.loss_fn(_params(), CONFIG, jax.tree.map(jnp.asarray, _batch(0)), key)
    assert float(ref_m["loss"]) < float(plain)


def test_training_decays_to_zero_at_the_last_step_and_saves_the_progress(tmp_path):
    run = tmp_path / "run"
    Train(preset="tiny", run_dir=str(run), steps=4, lr_decay="cosine", warmup_steps=0, log_every=1,
          num_samples=0, progress=False, channels=16, channel_mult=(1,), image_size=8, attn_resolutions=(),
          head_dim=4, emb_dim=16, frames=3, image_frames=1, learning_rate=0.01).run()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["learning_rate"] for r in rows if "learning_rate" in r]
    want = [0.01 * 0.5 * (1 + math.cos(math.pi * n / 4)) for n in range(4)]  # update n at p = n / 4
    np.testing.assert_allclose(rates, want, rtol=1e-5, atol=1e-9)
    meta = json.loads(sorted((run / "checkpoints").glob("step_*/meta.json"))[-1].read_text())
    assert meta["lr_progress"] == 1.0


def test_a_resumed_run_continues_an_unfinished_decay_and_restarts_a_finished_one(capsys):
    opts = Train(lr_decay="cosine").options()
    assert resumed_progress(opts, {"lr_progress": 0.4}) == 0.4
    assert resumed_progress(opts, {}) == 0.0
    assert resumed_progress(opts, {"lr_progress": 1.0}) == 0.0
    assert "decays again from the full learning rate" in capsys.readouterr().err
    assert resumed_progress(Train(lr_decay="none").options(), {"lr_progress": 0.4}) == 0.0  # no decay: nothing to continue


def test_the_flags_reach_the_configuration():
    import tyro

    opts = tyro.cli(Train, args=["--loss-weight", "min_snr", "--min-snr-gamma", "2", "--lr-decay", "cosine",
                                 "--temporal-position", "shaw"]).options()
    tc = opts.config.train
    assert (tc.loss_weight, tc.min_snr_gamma, tc.lr_decay) == ("min_snr", 2.0, "cosine")
    assert opts.recipe.lr_decay == "cosine" and opts.config.unet.temporal_position == "shaw"
    with pytest.raises(SystemExit):
        tyro.cli(Train, args=["--lr-decay", "linear"])


def test_the_mnist_small_preset_uses_the_measured_recipe():
    """docs/training.md (20 minutes at full speed): Min-SNR-5 + cosine decay, PC sampling."""
    from vdm_ref.configs import get_preset

    c = get_preset("mnist-small")
    assert (c.train.loss_weight, c.train.min_snr_gamma, c.train.lr_decay) == ("min_snr", 5.0, "cosine")
    assert c.diffusion.langevin_corrector and c.diffusion.sampling_steps == 128


def test_training_previews_follow_the_configured_sampler():
    """With langevin_corrector set, the preview sampler is PC (Eq. 4 + 5) on the same keys."""
    from vdm_fast.backend import Denoiser
    from vdm_fast.network import from_params
    from vdm_fast.samplers import sample_ancestral, sample_pc
    from vdm_fast.training._sample import sample_videos
    from vdm_ref.schedule import logsnr_grid

    u, d = CONFIG.unet, CONFIG.diffusion
    params = _params()
    key = jax.random.PRNGKey(3)
    k_z, k_noise = jax.random.split(key)
    z = jax.random.normal(k_z, (2, u.frames, u.image_size, u.image_size, u.in_channels), jnp.float32)
    grid = jnp.asarray(logsnr_grid(4, d.logsnr_min, d.logsnr_max), jnp.float32)
    den = Denoiser(from_params(u, params), u.target, clip_x=True)
    pc_config = dataclasses.replace(CONFIG, diffusion=dataclasses.replace(d, langevin_corrector=True))
    got_pc = sample_videos(params, key, config=pc_config, num=2, steps=4)
    want_pc = sample_pc(den, z, grid, k_noise, jax.random.fold_in(k_noise, 1), gamma=d.gamma,
                        delta=d.langevin_delta)
    np.testing.assert_allclose(np.asarray(got_pc), np.asarray(want_pc), atol=1e-6)
    plain_config = dataclasses.replace(CONFIG, diffusion=dataclasses.replace(d, langevin_corrector=False))
    got = sample_videos(params, key, config=plain_config, num=2, steps=4)
    np.testing.assert_allclose(np.asarray(got), np.asarray(sample_ancestral(den, z, grid, k_noise, gamma=d.gamma)),
                               atol=1e-6)
    assert np.max(np.abs(np.asarray(got) - np.asarray(got_pc))) > 1e-3  # the corrector changed the draw
