"""The generation commands (`python cli.py sample|predict|extend|interpolate|upsample`) over a
checkpoint: bad input is a clear error before any sampling; one end-to-end run writes the files."""

import dataclasses

import numpy as np
import pytest

import cli
from vdm_fast.generation.commands import Extend, Interpolate, Predict, Sample, Upsample
from vdm_fast.inputs import UsageError
from vdm_ref import configs as C
from vdm_ref.support.checkpoint import save_checkpoint
from vdm_ref.support.data import read_frame_grid, read_video, write_video


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random model (4 frames of 8x8x1) saved as a training run would save it."""
    from vdm_ref.network import init

    cfg = C.get_preset("tiny")
    cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, frames=4, image_size=8, in_channels=1,
                                                            out_channels=1),
                              diffusion=dataclasses.replace(cfg.diffusion, sampling_steps=2))
    params = init(cfg.unet, 0)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run, 10, {"params": params, "ema": params},
                    {"config": dataclasses.asdict(cfg), "data": {"dataset": "moving_mnist", "digit_size": 4}})
    return run


def test_missing_checkpoint_is_a_clear_error(tmp_path, no_sampling):
    with pytest.raises(UsageError, match="no checkpoint at"):
        Sample(checkpoint=str(tmp_path / "nope")).run()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no checkpoint at"):
        Sample(checkpoint=str(tmp_path / "empty")).run()


def test_video_shorter_than_the_conditioning_is_a_clear_error(checkpoint, tmp_path, no_sampling):
    frames = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.full((3, 8, 8, 1), 60, np.uint8)
    path = write_video(tmp_path / "short.gif", frames)  # distinct frames: GIF merges equal ones
    with pytest.raises(UsageError, match="3 frames, fewer than the 5 conditioning frames"):
        Predict(checkpoint=str(checkpoint), video=str(path), given_frames=5, length=8, out=str(tmp_path / "o")).run()
    with pytest.raises(UsageError, match="3 frames, fewer than --initial-frames 4"):
        Extend(checkpoint=str(checkpoint), video=str(path), initial_frames=4, out=str(tmp_path / "o")).run()
    one = write_video(tmp_path / "one.gif", np.zeros((1, 8, 8, 1), np.uint8))
    with pytest.raises(UsageError, match="interpolation needs at least 2"):
        Interpolate(checkpoint=str(checkpoint), video=str(one), factor=2, out=str(tmp_path / "o")).run()


def test_resolution_the_model_cannot_take_is_a_clear_error(checkpoint, tmp_path, no_sampling):
    path = write_video(tmp_path / "big.gif", np.arange(6, dtype=np.uint8)[:, None, None, None]
                       * np.full((6, 12, 12, 1), 40, np.uint8))
    with pytest.raises(UsageError, match="12x12: the model takes 8x8 frames; pass --resize"):
        Extend(checkpoint=str(checkpoint), video=str(path), out=str(tmp_path / "o")).run()
    with pytest.raises(UsageError, match="divide"):
        Upsample(checkpoint=str(checkpoint), video=str(tmp_path / "big.gif"), out=str(tmp_path / "o")).run()
    with pytest.raises(UsageError, match="replacement has nothing to replace"):
        Upsample(checkpoint=str(checkpoint), clip=0, method="replacement", out=str(tmp_path / "o")).run()


def test_other_bad_options(checkpoint, tmp_path, no_sampling):
    ck = str(checkpoint)
    with pytest.raises(UsageError, match="exactly one input"):
        Predict(checkpoint=ck, out=str(tmp_path / "o")).run()
    with pytest.raises(UsageError, match="no video at"):
        Predict(checkpoint=ck, video=str(tmp_path / "missing.mp4")).run()
    with pytest.raises(UsageError, match="unconditional"):
        Sample(checkpoint=ck, label=3).run()
    with pytest.raises(UsageError, match="context"):
        Extend(checkpoint=ck, context_frames=4).run()
    with pytest.raises(UsageError, match="batch-size"):
        Sample(checkpoint=ck, batch_size=0).run()
    with pytest.raises(UsageError, match="steps"):
        Sample(checkpoint=ck, steps=1).run()


def test_extend_end_to_end_writes_video_grid_and_arrays(checkpoint, tmp_path, capsys):
    out = tmp_path / "ext"
    Extend(checkpoint=str(checkpoint), out=str(out), batch_size=2, length=7, context_frames=2, format="gif",
           coherence=True, progress=False).run()
    data = np.load(out.with_suffix(".npz"))
    assert data["video"].shape == (2, 7, 8, 8, 1)
    assert data["boundaries"].tolist() == [4, 6]
    assert read_video(out.with_suffix(".gif")).shape[:3] == (7, 8, 2 * 8 + 2)
    grid = read_frame_grid(out.with_suffix(".png"), rows=2, cols=7)
    assert grid.shape == (2, 7, 8, 8, 1)
    assert "boundary coherence" in capsys.readouterr().out
    assert out.with_suffix(".json").exists()
    assert (tmp_path / "ext_boundaries.png").exists()


GENERATION = ("sample", "predict", "extend", "interpolate", "upsample", "cascade")


def test_cli_help_lists_the_generation_commands(capsys):
    """What a user sees: `python cli.py --help` names each command, and each command's --help
    runs and shows its own flags."""
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    top = capsys.readouterr().out
    own = {"sample": "--length", "predict": "--given-frames", "extend": "--initial-frames",
           "interpolate": "--subsample-clip", "upsample": "--factor", "cascade": "--base"}
    for name in GENERATION:
        assert name in top
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for flag in ("--checkpoint", "--out", "--format", "--steps", "--batch-size", own[name]):
            assert flag in text, (name, flag)
