"""Issue 13 for `sample` / `predict` / `extend` / `upsample` / `evaluate`: whatever a user passes
ends in a result or in one line naming the flag or file (never a traceback), found before any
sampling where it can be, and nothing outside the output is written."""

import dataclasses
import hashlib
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cli
from tiny_models import one_line_error
from vdm_ref import configs as C
from vdm_ref.support.checkpoint import save_checkpoint

ROOT = Path(cli.__file__).resolve().parent
FAST = ["--steps", "2", "--batch-size", "1", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random tiny unconditional model (4 frames of 8x8x1, one level, no attention: short
    compiles; 2 sampling steps), no training."""
    from vdm_ref.network import init

    cfg = C.get_preset("tiny")
    cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, frames=4, image_size=8, in_channels=1,
                                                            out_channels=1, channel_mult=(1,), attn_resolutions=()),
                              diffusion=dataclasses.replace(cfg.diffusion, sampling_steps=2))
    params = init(cfg.unet, 0)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run, 5, {"params": params, "ema": params},
                    {"config": C.config_to_dict(cfg), "data": {"dataset": "moving_mnist", "mnist_digit_size": 4,
                                                               "mnist_digits": 1}})
    return run


def copy_checkpoint(run: Path, dst: Path) -> Path:
    """A copy of the run's only checkpoint directory (meta.json + arrays.npz)."""
    (step,) = sorted((run / "checkpoints").glob("step_*"))
    return Path(shutil.copytree(step, dst))


# ---------------------------------------------------------------------------------------------
# --out


def test_out_in_a_folder_that_cannot_exist_fails_before_sampling(checkpoint, tmp_path, no_sampling):
    (tmp_path / "file").write_text("not a folder")
    msg = one_line_error(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "file/sub/x")])
    assert msg.startswith("error: --out ") and "is a file, not a folder" in msg
    assert (tmp_path / "file").read_text() == "not a folder"


def test_out_suffix_sets_the_format(checkpoint, tmp_path):
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "x.gif")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gif", "x.npz", "x.png"]
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "y.mp4")])
    assert (tmp_path / "y.mp4").is_file() and not (tmp_path / "y.gif").exists()
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "z"), "--format", "gif"])
    assert (tmp_path / "z.gif").is_file()


def test_a_dot_in_the_out_name_stays_in_every_file_name(checkpoint, tmp_path):
    """`--out run0.5.gif` writes run0.5.gif/.png/.npz and leaves run0.gif/.png (another run's) alone."""
    for name in ("run0.gif", "run0.png", "run0.npz"):
        (tmp_path / name).write_bytes(b"another run")
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "run0.5.gif")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0.5.gif", "run0.5.npz", "run0.5.png", "run0.gif",
                                                          "run0.npz", "run0.png"]
    assert all((tmp_path / n).read_bytes() == b"another run" for n in ("run0.gif", "run0.png", "run0.npz"))


def test_the_default_out_never_replaces_earlier_samples(checkpoint, tmp_path, monkeypatch):
    """Without --out, a second `sample` writes samples/sample-2.*; the first run's files stay."""
    monkeypatch.chdir(tmp_path)
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--format", "gif"])
    first = {p.name: p.read_bytes() for p in (tmp_path / "samples").iterdir()}
    assert sorted(first) == ["sample.gif", "sample.npz", "sample.png"]
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--format", "gif", "--seed", "1"])
    cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--format", "gif", "--seed", "2"])
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == sorted(["sample.gif", "sample.npz", "sample.png", "sample-2.gif", "sample-2.npz", "sample-2.png",
                            "sample-3.gif", "sample-3.npz", "sample-3.png"])
    assert all((tmp_path / "samples" / n).read_bytes() == b for n, b in first.items())


def test_the_default_evaluation_out_never_replaces_an_earlier_one(checkpoint, tmp_path, monkeypatch):
    from vdm_fast.evaluation.command import Evaluate

    monkeypatch.chdir(tmp_path)
    name = checkpoint.name
    assert Evaluate(checkpoint=str(checkpoint)).default_out() == Path("evaluations") / f"{name}.json"
    (tmp_path / "evaluations").mkdir()
    (tmp_path / "evaluations" / f"{name}.json").write_text("{}")
    assert Evaluate(checkpoint=str(checkpoint)).default_out() == Path("evaluations") / f"{name}-2.json"


def test_delta_reaches_the_langevin_step(checkpoint, tmp_path):
    """--delta changes predictor-corrector samples (Eq. 5) and nothing without the corrector."""
    def video(*flags):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        cli.main(["sample", "--checkpoint", str(checkpoint), *FAST, "--format", "gif", "--out", str(out), *flags])
        return np.load(out.parent / (out.name + ".npz"))["video"]

    assert not np.allclose(video("--corrector", "True"), video("--corrector", "True", "--delta", "0.5"))
    np.testing.assert_array_equal(video("--corrector", "False"), video("--corrector", "False", "--delta", "0.5"))


@pytest.mark.parametrize("command", ["extend", "predict"])
def test_out_never_writes_over_or_into_an_input(checkpoint, tmp_path, no_sampling, command):
    """--out naming the input video (walk.gif -> walk), a frame folder or the checkpoint's files is
    refused before sampling, and the input is unchanged."""
    from vdm_ref.support.data import write_frame_grid, write_video

    video = np.zeros((4, 8, 8, 1), np.float32)
    walk = write_video(tmp_path / "walk.gif", video, fps=8.0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        write_frame_grid(frames / f"{i:03d}.png", video[None, i:i + 1])
    before = snapshot(tmp_path, checkpoint)
    for video_flag, out, clash in ((walk, tmp_path / "walk", f"would write over the input --video {walk}"),
                                   (frames, frames / "o", "would write o.gif into the input folder --video")):
        msg = one_line_error([command, "--checkpoint", str(checkpoint), *FAST, "--out", str(out), "--format", "gif",
                              "--video", str(video_flag)])
        assert clash in msg
    (step,) = sorted((checkpoint / "checkpoints").glob("step_*"))
    msg = one_line_error([command, "--checkpoint", str(step), *FAST, "--out", str(step / "arrays"), "--video",
                          str(walk)])
    assert "would write over arrays.npz of the input --checkpoint" in msg
    assert snapshot(tmp_path, checkpoint) == before


def test_the_extra_files_of_upsample_and_cascade_are_checked_before_sampling():
    from vdm_fast.generation.commands import Cascade, Upsample

    assert Path("o_low_res.png") in Upsample().paths(Path("o"), "gif")
    assert {Path("o_base.gif"), Path("o_stages.png")} <= set(Cascade().paths(Path("o"), "gif"))


def test_unknown_or_conflicting_out_suffix_is_one_line(checkpoint, tmp_path, no_sampling):
    msg = one_line_error(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "x.avi")])
    assert "unknown suffix '.avi'" in msg and ".mp4 or .gif" in msg
    msg = one_line_error(["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "x.gif"),
                          "--format", "mp4"])
    assert "--format mp4" in msg
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_bit(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the stored arrays: the zip's CRC-32 no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_bit, lambda p: p.write_bytes(b"")])
def test_damaged_arrays_are_one_line_naming_the_file(checkpoint, tmp_path, damage, no_sampling):
    ck = copy_checkpoint(checkpoint, tmp_path / "ck")
    damage(ck / "arrays.npz")
    msg = one_line_error(["sample", "--checkpoint", str(ck), *FAST, "--out", str(tmp_path / "o")])
    assert msg.startswith("error: --checkpoint ") and "arrays.npz" in msg, msg


def test_damaged_meta_is_one_line(checkpoint, tmp_path, no_sampling):
    ck = copy_checkpoint(checkpoint, tmp_path / "ck")
    (ck / "meta.json").write_text("{not json")
    msg = one_line_error(["sample", "--checkpoint", str(ck), *FAST, "--out", str(tmp_path / "o")])
    assert msg.startswith("error: --checkpoint ") and str(ck) in msg, msg


# ---------------------------------------------------------------------------------------------
# Bad flag values and inputs


@pytest.mark.parametrize("flags, message", [
    (["--steps", "-1"], "--steps -1: expected >= 2"),
    (["--batch-size", "0"], "--batch-size 0: expected >= 1"),
    (["--fps", "0"], "--fps 0.0: expected > 0"),
    (["--fps", "inf"], "--fps inf: expected a finite number"),
    (["--gamma", "1.5"], r"--gamma 1.5: expected a value in \[0, 1\]"),
    (["--length", "0"], "--length 0: expected >= 1"),
    (["--delta", "0"], "--delta 0.0: expected > 0"),
    (["--delta", "nan"], "--delta nan: expected a finite number"),
    (["--seed", str(2**70)], "--seed"),
    (["--checkpoint", "/nonexistent/run"], "no checkpoint at '/nonexistent/run'"),
])
def test_bad_sample_flags_are_one_line(checkpoint, tmp_path, no_sampling, flags, message):
    argv = ["sample", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "o"), *flags]
    assert re.search(message, one_line_error(argv))


@pytest.mark.parametrize("command", ["extend", "upsample", "predict"])
@pytest.mark.parametrize("name, content", [("notes.txt", b"hello"), ("fake.mp4", b"not a video at all"),
                                           ("empty.gif", b"")])
def test_a_file_that_is_not_a_video_is_one_line(checkpoint, tmp_path, no_sampling, command, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    msg = one_line_error([command, "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "o"),
                          "--video", str(path)])
    assert f"--video {path}" in msg


@pytest.mark.parametrize("flags, message", [
    (["--num-samples", "1"], "FVD needs at least 2 videos"),
    (["--steps", "-1"], "--steps -1: expected >= 2"),
    (["--batch-size", "0"], "batch sizes must be >= 1"),
    (["--data-seed", "-1"], "--data-seed -1: expected >= 0"),
    (["--w-r", "nan"], "--w-r nan: expected a finite number"),
    (["--checkpoint", "/nonexistent/run"], "no checkpoint at"),
])
def test_bad_evaluate_flags_are_one_line(checkpoint, tmp_path, no_sampling, flags, message):
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--protocols", "unconditional", "--num-samples", "2",
            "--fvd-splits", "1", "--no-progress", "--out", str(tmp_path / "r.json"), *flags]
    assert re.search(message, one_line_error(argv))
    assert not (tmp_path / "r.json").exists()


def test_evaluate_out_under_a_file_fails_before_sampling(checkpoint, tmp_path, no_sampling):
    (tmp_path / "file").write_text("x")
    msg = one_line_error(["evaluate", "--checkpoint", str(checkpoint), "--num-samples", "2", "--fvd-splits", "1",
                          "--out", str(tmp_path / "file/r.json")])
    assert msg.startswith("error: --out ")
    msg = one_line_error(["evaluate", "--checkpoint", str(checkpoint), "--num-samples", "2", "--fvd-splits", "1",
                          "--out", str(tmp_path / "r.json"), "--save-videos", str(tmp_path / "file")])
    assert msg.startswith("error: --save-videos ")


# ---------------------------------------------------------------------------------------------
# Random flag values


def snapshot(*roots: Path) -> dict:
    """{path: sha256} of every file under `roots` (what must not change)."""
    out = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def guarded_run(argv, workdir: Path, checkpoint: Path) -> bool:
    """Run `cli.main(argv)` in `workdir`: success (True) or a one-line error (False); nothing
    outside `workdir` (the checkpoint, the repository's output folders) changes."""
    watched = (checkpoint, ROOT / "samples", ROOT / "evaluations", ROOT / "checkpoints")
    before, top = snapshot(*watched), sorted(os.listdir(ROOT))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        cli.main(argv)
        ok = True
    except SystemExit as e:
        if e.code != 2:  # 2: tyro's own parse error (a usage box, not a traceback)
            assert isinstance(e.code, str) and "\n" not in e.code and e.code.startswith("error:"), e.code
        ok = False
    finally:
        os.chdir(cwd)
    assert snapshot(*watched) == before and sorted(os.listdir(ROOT)) == top
    return ok


def maybe(values):
    return st.one_of(st.none(), st.sampled_from(values))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=maybe([-3, 0, 1, 2]), batch=st.sampled_from([-1, 0, 1, 2]), length=maybe([-1, 0, 1, 4, 5]),
       seed=st.integers(-(2**65), 2**65), fps=st.sampled_from([8.0, 0.0, -1.0, math.inf, math.nan]),
       gamma=maybe([-0.5, 0.0, 0.3, 1.5, math.nan]), w=maybe([-1.0, 0.0, 2.0, math.nan]),
       context=maybe([-1, 0, 2, 4]), suffix=st.sampled_from(["", ".gif", ".mp4", ".avi", ".1"]))
@example(steps=2, batch=1, length=5, seed=-3, fps=8.0, gamma=0.3, w=None, context=2, suffix=".gif")  # succeeds
def test_random_sample_flags_give_a_result_or_one_line(checkpoint, tmp_path_factory, steps, batch, length, seed, fps,
                                                       gamma, w, context, suffix):
    work = tmp_path_factory.mktemp("sample")
    argv = ["sample", "--checkpoint", str(checkpoint), "--batch-size", str(batch), "--seed", str(seed), "--fps",
            str(fps), "--out", "out" + suffix, "--no-progress"]
    for flag, value in (("--steps", steps), ("--length", length), ("--gamma", gamma), ("--guidance-weight", w),
                        ("--context-frames", context)):
        argv += [] if value is None else [flag, str(value)]
    if guarded_run(argv, work, checkpoint):
        assert (work / "out.npz").is_file()
    else:
        assert not (work / "out.npz").exists()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocols=st.lists(st.sampled_from(["unconditional", "bair", "kinetics", "extend"]), min_size=0, max_size=2),
       n=st.sampled_from([-1, 0, 1, 2, 3]), fvd_splits=st.sampled_from([0, 1, 2]), is_splits=st.sampled_from([0, 1, 3]),
       batch=st.sampled_from([0, 1, 2]), steps=maybe([-1, 1, 2]), length=maybe([0, 4, 9]),
       extend_factor=st.sampled_from([0, 1, 2]), data_seed=st.sampled_from([-1, 0, 5]),
       w=maybe([-1.0, 0.0, 1.0, math.nan]), seed=st.integers(-(2**65), 2**65))
@example(protocols=["unconditional"], n=3, fvd_splits=1, is_splits=3, batch=2, steps=2, length=None,
         extend_factor=0, data_seed=5, w=None, seed=7)  # succeeds
def test_random_evaluate_flags_give_a_result_or_one_line(checkpoint, tmp_path_factory, protocols, n, fvd_splits,
                                                         is_splits, batch, steps, length, extend_factor, data_seed, w,
                                                         seed):
    from vdm_fast.evaluation import run

    work = tmp_path_factory.mktemp("evaluate")
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--num-samples", str(n), "--fvd-splits", str(fvd_splits),
            "--is-splits", str(is_splits), "--batch-size", str(batch), "--extend-factor", str(extend_factor),
            "--data-seed", str(data_seed), "--seed", str(seed), "--no-progress", "--out", "r.json"]
    argv += ["--protocols", *protocols] if protocols else []
    for flag, value in (("--steps", steps), ("--length", length), ("--guidance-weight", w)):
        argv += [] if value is None else [flag, str(value)]

    def stub(*args, **kwargs):  # a cheap stand-in for I3D: per-video mean and spread
        return lambda v: np.stack([np.asarray(v).mean((1, 2, 3, 4)), np.asarray(v).std((1, 2, 3, 4))], axis=1)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run, "default_embed", stub)
        assert guarded_run(argv, work, checkpoint) == (work / "r.json").is_file()


@pytest.mark.parametrize("given", [0, 1])
def test_evaluate_batches_have_one_shape(monkeypatch, given):
    """A short last batch is filled up to the batch size (its last row repeated, the extra videos
    dropped), so the sampler sees one shape and compiles once; each video keeps its own row."""
    import vdm_fast.generation as generation
    from vdm_fast.evaluation import run
    from vdm_fast.evaluation.protocols import Protocol

    seen = []

    def fake(model, key, x=None, *, batch_size=None, length, cond, options, return_windows, given_frames=None):
        b = batch_size if x is None else x.shape[0]
        seen.append((b, None if cond is None else np.asarray(cond)[:, 0].tolist()))
        return np.broadcast_to(np.asarray(cond, np.float32)[:, 0, None, None, None, None], (b, length, 1, 1, 1)), []

    monkeypatch.setattr(generation, "sample", fake)
    monkeypatch.setattr(generation, "predict", lambda model, key, x, **kw: fake(model, key, x, **kw))
    n, cond = 5, np.arange(5.0)[:, None] * np.ones((5, 3))
    videos, _ = run.generate(None, Protocol("p", given, 2, 2, ""), np.zeros((n, 2, 1, 1, 1)), cond, None,
                             seed=0, batch_size=2)
    assert [b for b, _ in seen] == [2, 2, 2]
    assert seen[-1][1] == [4.0, 4.0]
    np.testing.assert_array_equal(videos[:, 0, 0, 0, 0], np.arange(5.0))
    seen.clear()
    run.generate(None, Protocol("p", given, 2, 2, ""), np.zeros((n, 2, 1, 1, 1)), cond, None, seed=0, batch_size=8)
    assert [b for b, _ in seen] == [5]
