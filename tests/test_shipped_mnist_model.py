"""The shipped default model (`checkpoints/mnist-small`, issue 15): the two-hour run of the
preset's recipe, class-conditional, exported EMA-only with its checksum and guidance weight
w = 4, small enough to ship; `python cli.py sample` uses it with no flags: every class in turn,
guided, with the predictor-corrector sampler its configuration names. The unconditional
two-hour model (`checkpoints/mnist-small-uncond`) and the earlier ε model
(`checkpoints/mnist-small-eps`, it predates checksums) stay loadable."""

import json
from pathlib import Path

import numpy as np

import cli
from vdm_fast.inputs import DEFAULT_CHECKPOINT
from vdm_ref.support import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_checkpoint_is_the_preset_recipe_ema_only_with_its_checksum():
    path = ROOT / DEFAULT_CHECKPOINT
    arrays, meta = ckpt.load_checkpoint(path)  # verifies arrays_sha256 when present
    assert sorted(arrays) == ["ema"] and meta["arrays_sha256"] == ckpt.sha256_file(path / "arrays.npz")
    config = meta["config"]
    assert config["name"] == "mnist-small" and config["diffusion"]["langevin_corrector"] is True
    assert meta["recipe"]["lr_decay"] == "cosine" and config["train"]["loss_weight"] == "min_snr"
    assert (config["unet"]["conditioning"], config["unet"]["num_classes"]) == ("class", 10)
    assert config["diffusion"]["guidance_weight"] == 4.0 and meta["export_sampling_was"] == {"guidance_weight": 0.0}
    assert (path / "arrays.npz").stat().st_size < 8 * 2**20


def test_sample_with_no_flags_reads_the_default_checkpoint_and_its_corrector(tmp_path, capsys):
    from vdm_fast.generation import load_model
    from vdm_fast.generation.engine import SamplerOptions

    model = load_model(ROOT / DEFAULT_CHECKPOINT)
    assert SamplerOptions.from_config(model.config.diffusion).corrector is True
    out = tmp_path / "s"
    cli.main(["sample", "--out", str(out), "--steps", "2", "--batch-size", "2", "--no-progress", "--format", "gif"])
    video = np.load(out.with_suffix(".npz"))["video"]
    assert video.shape == (2, 8, 32, 32, 1) and np.all(np.isfinite(video))
    assert json.loads(out.with_suffix(".json").read_text())["labels"] == [0, 1]
    step = ckpt.load_checkpoint(ROOT / DEFAULT_CHECKPOINT)[1]["step"]
    assert f"mnist-small: 8x32x32x1, eps-prediction, conditioning class, step {step} " in capsys.readouterr().out


def test_the_unconditional_two_hour_model_still_loads():
    arrays, meta = ckpt.load_checkpoint(ROOT / "checkpoints" / "mnist-small-uncond")
    assert sorted(arrays) == ["ema"] and meta["config"]["unet"]["conditioning"] == "none"
    assert meta["step"] == 15485


def test_the_earlier_eps_model_without_a_checksum_still_loads():
    arrays, meta = ckpt.load_checkpoint(ROOT / "checkpoints" / "mnist-small-eps")
    assert "arrays_sha256" not in meta and "ema" in arrays and meta["config"]["unet"]["target"] == "eps"
