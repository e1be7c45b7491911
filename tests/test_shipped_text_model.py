"""The shipped caption-conditioned model (`checkpoints/mnist-text-16`, issue 16): it loads with its
checksum, samples from a caption at its default guidance weight, notes a caption unlike its
training captions, and the unconditional default model's --caption error points to it."""

import json
import re
from pathlib import Path

import numpy as np
from tiny_models import one_line_error

import cli
from vdm_fast.inputs import TEXT_CHECKPOINT

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "2", "--batch-size", "1", "--no-progress", "--format", "gif"]


def test_the_shipped_text_model_samples_a_caption(tmp_path, capsys):
    from vdm_fast.generation import load_model

    model = load_model(ROOT / TEXT_CHECKPOINT)
    assert model.unet.conditioning == "text" and model.config.diffusion.guidance_weight > 0
    for i, caption in enumerate(["digit 7 is moving left and right", "digit 7 is moving right"]):
        out = tmp_path / f"s{i}"
        cli.main(["sample", "--checkpoint", str(ROOT / TEXT_CHECKPOINT), "--out", str(out), *FAST,
                  "--caption", caption])
        video = np.load(out.with_suffix(".npz"))["video"]
        assert video.shape == (1, 8, 16, 16, 1) and np.all(np.isfinite(video))
        assert json.loads(out.with_suffix(".json").read_text())["caption"] == caption
        err = capsys.readouterr().err
        assert ("'moving right' describes no digit" in err) == (i == 1), err


def test_a_caption_for_the_class_conditional_default_names_the_text_model(tmp_path):
    text = one_line_error(["sample", "--out", str(tmp_path / "o"), *FAST, "--caption", "digit 7 is moving right"])
    assert re.search(rf"class-conditional; pass --label.*--checkpoint {TEXT_CHECKPOINT}", text), text
    text = one_line_error(["sample", "--checkpoint", str(ROOT / "checkpoints" / "mnist-small-uncond"),
                           "--out", str(tmp_path / "o"), *FAST, "--caption", "digit 7 is moving right"])
    assert re.search(rf"unconditional.*--checkpoint {TEXT_CHECKPOINT}", text), text
