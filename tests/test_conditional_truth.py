"""scripts/conditional_truth: the ground-truth measures can fail (PSNR, classical upsampling, digit
agreement), and the script runs end to end at tiny size, writing every field of its JSON."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from scripts.conditional_truth.__main__ import main
from scripts.conditional_truth.report import load_runs
from scripts.conditional_truth.measures import MSE_FLOOR, digit_agreement, label_accuracy, psnr, upsample_classical
from vdm_fast.generation import Model
from vdm_ref import configs as C
from vdm_ref.guidance import downsample_area
from vdm_ref.oracle import GaussianVideoOracle
from vdm_ref.support.checkpoint import save_checkpoint
from vdm_ref.support.data import MovingMNIST

ROOT = Path(__file__).resolve().parents[1]
CAP = 10 * np.log10(4 / MSE_FLOOR)  # PSNR of identical videos


def smooth_clip(b=2, t=3, size=32):
    """A low-frequency moving sinusoid in [-0.8, 0.8] (well resolved at half the resolution)."""
    y, x = np.mgrid[:size, :size] / size
    frames = [0.8 * np.sin(2 * np.pi * (x + 0.5 * y + 0.1 * f)) for f in range(t)]
    return np.broadcast_to(np.stack(frames)[None, ..., None], (b, t, size, size, 1)).astype(np.float32)


def test_pixel_repeat_is_exact_on_a_clip_that_is_constant_on_blocks():
    low = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 16, 1)).astype(np.float32)
    x = np.repeat(np.repeat(low, 2, axis=2), 2, axis=3)
    up = upsample_classical(downsample_area(x, 2), 2, "pixel repeat")
    np.testing.assert_allclose(psnr(up, x), CAP, rtol=1e-6)  # exact up to float32 rounding
    assert np.all(psnr(downsample_area(up, 2), low) > 100)
    # bilinear is not exact on the same (white-noise) clip, measured 16.7 dB: the measure separates them
    assert np.all(psnr(upsample_classical(low, 2, "bilinear"), x) < 25)


def test_bilinear_recovers_a_smooth_clip_far_better_than_a_constant_image():
    x = smooth_clip()
    low = downsample_area(x, 2)
    bilinear, bicubic = (upsample_classical(low, 2, m) for m in ("bilinear", "bicubic"))
    constant = np.full_like(x, x.mean())
    # measured 39.9 dB (bilinear), 44.2 dB (bicubic), 11.0 dB (the constant): margins of several dB
    assert np.all(psnr(bilinear, x) > 30)
    assert np.all(psnr(bicubic, x) > psnr(bilinear, x))
    assert np.all(psnr(constant, x) < psnr(bilinear, x) - 20)
    assert np.all(psnr(bilinear, x, frames=[0]) > 30)
    with pytest.raises(ValueError, match="one shape"):
        psnr(bilinear[:, :2], x)


def test_digit_agreement_needs_the_same_digit_at_the_same_place():
    ds = MovingMNIST(3, num_frames=4, resolution=32, digit_size=20, num_digits=1, speed=(1.0, 3.0),
                     split="test", seed=1234)
    x = ds.batch(np.arange(3))
    labels = np.array([[ds.spec(i).labels[0]] for i in range(3)])
    np.testing.assert_allclose(digit_agreement(x, x, 20), 1.0)
    np.testing.assert_allclose(digit_agreement(np.full_like(x, -1.0), x, 20), 0.0)  # nothing drawn
    far = np.roll(x, 12, axis=3)  # the same digit 12 px to the right (beyond τ = 5 px)
    np.testing.assert_allclose(digit_agreement(far, x, 20), 0.0)
    # the classifier reads the real clips' own digits (95.7 % on MNIST test digits)
    assert label_accuracy(x, labels, 20).mean() >= 2 / 3
    assert label_accuracy(np.full_like(x, -1.0), labels, 20).max() == 0.0


class OracleDenoiser(eqx.Module):
    """The exact E[x | z_t] of a Gaussian oracle as a Model's denoiser: no network to compile."""

    oracle: GaussianVideoOracle = eqx.field(static=True)

    def __call__(self, z, logsnr, cond=None):
        return jnp.asarray(self.oracle.denoise(jnp.asarray(z, jnp.float32), jnp.asarray(logsnr, jnp.float32)),
                           jnp.float32)


def oracle_model():
    """8 frames of 8x8x1 with the exact denoiser, and Moving MNIST data settings (4-px digits)."""
    oracle = GaussianVideoOracle(shape=(8, 8, 8, 1), rho_t=0.9, rho_s=0.6)
    unet = C.UNetConfig(channels=8, channel_mult=(1,), attn_resolutions=(), head_dim=8, emb_dim=8,
                        frames=8, image_size=8, in_channels=1, out_channels=1, norm_groups=2)
    config = C.Config("oracle", "moving_mnist", unet, C.DiffusionConfig(sampling_steps=4, gamma=0.1))
    data = {"dataset": "moving_mnist", "mnist_digit_size": 4, "mnist_digits": 1, "mnist_speed": [1.0, 2.0]}
    return Model(config, OracleDenoiser(oracle), meta={"data": data})


def check_outputs(runs, assets):
    """The JSON fields of every task, the known frames kept, and the report's tables and strips."""
    sr = load_runs(runs)["sr"][0]  # the seed's files merged
    assert set(sr["rows"]) == {"bilinear", "bicubic", "pixel repeat", "unguided model",
                               "Eq. 8, w_r = 5, ancestral", "Eq. 8, w_r = 5, pc"}
    for row in sr["rows"].values():
        assert {"psnr", "digit_agreement", "label_accuracy", "consistency_psnr", "seconds"} <= set(row)
        assert len(row["psnr_per_video"]) == 2 and np.isfinite(row["psnr"])
    assert sr["rows"]["pixel repeat"]["consistency_psnr"] == pytest.approx(CAP, rel=1e-6)
    for task in ("interpolation", "prediction"):
        r = json.loads((runs / f"{task}_seed0.json").read_text())
        assert set(r["rows"]) == {"baseline", "replacement", "reconstruction, w_r = 5"}
        for row in r["rows"].values():
            assert {"psnr_unknown", "digit_agreement", "carry_over", "same_digit"} <= set(row)
        # the known frames are kept exactly, so only unknown frames can differ from the truth
        with np.load(runs / f"{task}_seed0.npz") as z:
            for name in ("replacement", "reconstruction, w_r = 5"):
                np.testing.assert_allclose(z[name][:, r["known"]], z["truth"][:, r["known"]], atol=1e-6)
    ext = json.loads((runs / "extend_seed0.json").read_text())
    row = ext["rows"]["replacement"]
    assert row["boundaries"] == [8, 12, 16, 20, 24, 28]
    assert {"boundary", "within", "identity_boundary", "median_jump_boundary"} <= set(row)
    assert set(ext["truth"]) == {"real", "spliced"}
    for key in ("wall_seconds", "load_start", "load_end", "machine", "date", "model", "steps"):
        assert key in ext
    text = main(["report", "--runs", str(runs), "--assets", str(assets)])
    assert "### Spatial super-resolution (Eq. 8)" in text and "| bilinear |" in text
    assert sorted(p.name for p in assets.glob("*.png")) == ["extend.png", "interpolation.png", "prediction.png",
                                                           "sr.png"]


def test_script_runs_every_task_on_the_exact_oracle(tmp_path):
    # 2 videos, 4 steps, one seed; the PC rows come from a second, tagged run (merged by the report)
    runs = tmp_path / "runs"
    common = ["--videos", "2", "--steps", "4", "--w-r", "5", "--reference-videos", "4", "--runs", str(runs)]
    main(["run", "sr", "interpolation", "prediction", "extend", "--samplers", "ancestral", *common],
         model=oracle_model())
    main(["run", "sr", "--samplers", "pc", "--no-baselines", "--tag", "pc", *common], model=oracle_model())
    check_outputs(runs, tmp_path / "assets")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random 8-frame 16x16 model saved with Moving MNIST data settings (8-px digits)."""
    from vdm_ref.network import init

    cfg = C.get_preset("tiny")
    cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, frames=8, image_size=16, in_channels=1, attn_resolutions=(8,),
                                                            out_channels=1))
    run = tmp_path_factory.mktemp("run")
    params = init(cfg.unet, 0)
    save_checkpoint(run, 1, {"params": params, "ema": params},
                    {"config": dataclasses.asdict(cfg),
                     "data": {"dataset": "moving_mnist", "mnist_digit_size": 8, "mnist_digits": 1,
                              "mnist_speed": [1.0, 2.0]}})
    return run


@pytest.mark.slow
def test_script_runs_every_task_at_tiny_size(tiny_checkpoint, tmp_path):
    # the command line on a checkpoint (a random U-Net): every sampler compiles, 40 s on an idle
    # 2-core CPU and over 10 minutes on a loaded one
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "scripts.conditional_truth", "run", "sr", "interpolation", "prediction", "extend",
           "--checkpoint", str(tiny_checkpoint), "--videos", "2", "--steps", "4", "--w-r", "5",
           "--samplers", "ancestral", "pc", "--reference-videos", "4", "--runs", str(runs)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=1800)
    check_outputs(runs, tmp_path / "assets")
