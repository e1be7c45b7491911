"""The training loop end to end: bad input fails early and clearly, nothing is lost, and a run
killed with SIGKILL resumes to exactly the parameters of an uninterrupted run.

The runs use a one-level U-Net on 8x8 Moving MNIST (compiles in seconds). Subprocess runs share
a persistent compilation cache, so only the first one compiles.
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vdm_fast.training import Train, TrainError, train
from vdm_fast.training.memory import check_memory
from vdm_fast.training.options import resolve_config
from vdm_ref.configs import config_to_dict
from vdm_ref.support import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
MINI = ["--preset", "tiny", "--channels", "8", "--channel-mult", "1", "--attn-resolutions",
        "--image-size", "8", "--frames", "2", "--image-frames", "1", "--in-channels", "1",
        "--out-channels", "1", "--mnist-digit-size", "6", "--batch-size", "2", "--data-parallel", "1",
        "--warmup-steps", "2", "--num-samples", "0", "--no-progress", "--log-every", "1"]
MINI_KW = dict(preset="tiny", channels=8, channel_mult=(1,), attn_resolutions=(), image_size=8, frames=2,
               image_frames=1, in_channels=1, out_channels=1, mnist_digit_size=6, batch_size=2,
               data_parallel=1, warmup_steps=2, num_samples=0, progress=False, log_every=1)


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """A persistent compilation cache shared by this module's subprocess runs."""
    return tmp_path_factory.mktemp("jax-cache")


def _env(cache):
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", XLA_FLAGS="", JAX_PLATFORMS="cpu")


def _run(cache, *args, wait=True):
    env = _env(cache)
    cmd = [sys.executable, "-c", "import sys; from vdm_fast.training.command import main; main(sys.argv[1:])",
           *MINI, *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def _final_params(run_dir):
    arrays, meta = ckpt.load_checkpoint(run_dir)
    return ckpt.flatten(arrays), meta


@pytest.mark.slow  # ~60 s; the SIGTERM checkpoint path is tested in test_train_adversarial.py
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, jax_cache):
    steps = 12
    _run(jax_cache, "--run-dir", str(tmp_path / "full"), "--steps", str(steps), "--checkpoint-every", "1000")
    # The same run, killed with SIGKILL as soon as its first checkpoint is on disk.
    killed = tmp_path / "killed"
    proc = _run(jax_cache, "--run-dir", str(killed), "--steps", str(steps), "--checkpoint-every", "3", wait=False)
    deadline = time.time() + 300
    while ckpt.latest_checkpoint(killed) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = ckpt.list_checkpoints(killed)
    assert at_kill and at_kill[-1][0] < steps, "the run finished before it could be killed"
    # Without --resume the run directory is protected.
    with pytest.raises(TrainError, match="--resume"):
        train(Train(run_dir=str(killed), steps=steps, **MINI_KW).options())
    out = _run(jax_cache, "--run-dir", str(killed), "--steps", str(steps), "--checkpoint-every", "3", "--resume")
    assert f"trained steps {at_kill[-1][0]} -> {steps}" in out
    want, _ = _final_params(tmp_path / "full")
    got, meta = _final_params(killed)
    assert meta["step"] == steps and meta["data_position"]["next_batch"] == steps
    assert set(got) == set(want)
    for k in want:  # the same compiled program on the same inputs: bit-identical
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    lines = [json.loads(s) for s in (killed / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "steps_per_s", "examples_per_s"} <= set(lines[-1])
    assert (killed / "loss.png").is_file()


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # ~70 s: two processes joined by jax.distributed (multi-host path)
def test_two_processes_train_as_one_data_parallel_run(tmp_path, jax_cache):
    """Multi-host: two processes (one CPU device each) joined by `jax.distributed.initialize`
    (--coordinator-address, --num-processes, --process-id) feed their halves of each batch and
    end with the parameters of one process training on two devices."""
    steps = ["--steps", "3", "--checkpoint-every", "1000"]
    env2 = dict(_env(jax_cache), XLA_FLAGS="--xla_force_host_platform_device_count=2")
    cmd = [sys.executable, "-c", "import sys; from vdm_fast.training.command import main; main(sys.argv[1:])",
           *MINI, "--data-parallel", "-1"]  # the last flag wins: every device of the run
    one = subprocess.run([*cmd, *steps, "--run-dir", str(tmp_path / "one")], cwd=ROOT, env=env2,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stdout + one.stderr
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([*cmd, *steps, "--run-dir", str(tmp_path / "multi"), "--coordinator-address",
                               address, "--num-processes", "2", "--process-id", str(r)],
                              cwd=ROOT, env=_env(jax_cache), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    want, _ = _final_params(tmp_path / "one")
    got, meta = _final_params(tmp_path / "multi")
    assert meta["step"] == 3
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, jax_cache):
    run = tmp_path / "nan"
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from vdm_fast.training.command import main; main(sys.argv[1:])",
         *MINI, "--run-dir", str(run), "--steps", "20", "--checkpoint-every", "100", "--learning-rate", "1e30"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=_env(jax_cache))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "non-finite loss" in out.stderr and "last good state" in out.stderr
    arrays, meta = ckpt.load_checkpoint(run)
    # the loop reads a step's loss one step late: the checkpoint is still the state before the bad step
    bad = int(re.search(r"at step (\d+)", out.stderr).group(1))
    assert meta.get("stopped") == "non-finite loss" and meta["step"] == bad < 20
    assert int(arrays["opt"]["count"]) == bad
    assert all(np.isfinite(v).all() for v in ckpt.flatten(arrays).values())


@pytest.mark.parametrize("conditioning", [pytest.param("text", marks=pytest.mark.slow), "class"])
def test_conditioned_training_runs_end_to_end(tmp_path, conditioning):
    """Captions (MiniLM token embeddings) or digit labels reach the step, with conditioning
    dropout, and the preview samples are drawn under the first clips' conditions."""
    # 3 steps: the zero-initialised last layers pass no gradient to the embedding before step 3
    summary = train(_opts(tmp_path, conditioning=conditioning, steps=3, num_samples=2, sample_steps=2,
                          cond_dropout=0.5))
    assert summary["step"] == 3 and summary["samples"]["gif"]
    arrays, meta = ckpt.load_checkpoint(tmp_path / "run")
    assert meta["config"]["unet"]["conditioning"] == conditioning
    emb = ckpt.flatten(arrays["params"])
    key = "emb/text/q/w" if conditioning == "text" else "emb/class/w"
    assert key in emb and np.all(np.isfinite(emb[key]))
    assert np.any(emb[key] != ckpt.flatten(arrays["ema"])[key])  # trained (EMA lags)


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error before any long work (no compilation happens in these tests)


def _opts(tmp_path, **kw):
    base = {k: v for k, v in MINI_KW.items() if not ("data_dir" in kw and k.startswith("mnist_"))}
    return Train(**{**base, "run_dir": str(tmp_path / "run"), **kw}).options()


def test_missing_data_folder(tmp_path):
    with pytest.raises(TrainError, match="no such folder"):
        train(_opts(tmp_path, data_dir=str(tmp_path / "nope")))


def test_empty_data_folder(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(TrainError, match="empty"):
        train(_opts(tmp_path, data_dir=str(tmp_path / "videos")))
    assert not (tmp_path / "run").exists()  # nothing was created


def test_data_folder_without_usable_video(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "notes.txt").write_text("not a video")
    with pytest.raises(TrainError, match="no usable clip"):
        train(_opts(tmp_path, data_dir=str(tmp_path / "videos")))


def test_preset_flag_conflict():
    with pytest.raises(TrainError, match=r"preset 'mnist-small' with --channels 24 --norm-groups 16: .*norm_groups=16"):
        resolve_config("mnist-small", {"channels": 24, "norm_groups": 16})
    with pytest.raises(TrainError, match="--mnist-.* conflict with --data-dir"):
        Train(data_dir="x", mnist_digits=2).options()
    with pytest.raises(TrainError, match="contradict"):
        train(Train(resume=True, overwrite=True, **MINI_KW).options())


def test_the_config_notes_say_which_flags_changed_the_preset():
    """A checkpoint's notes are the preset's plus the recipe flags that changed it (not the step
    budget, not a flag equal to the preset's value)."""
    from vdm_ref.configs import get_preset

    preset = get_preset("mnist-small").notes
    assert resolve_config("mnist-small", {"train_steps": 5, "channels": 32}).notes == preset
    notes = resolve_config("mnist-small", {"conditioning": "class", "num_classes": 10, "cond_dropout": 0.2,
                                            "attn_resolutions": [8], "train_steps": 5}).notes
    assert notes == preset + " Trained with --conditioning class --num-classes 10 --cond-dropout 0.2 " \
                             "--attn-resolutions 8."


def test_resolution_not_divisible_by_the_unet_factor():
    with pytest.raises(TrainError, match=r"image_size=30: expected a multiple of patch_size\*2\*\*\(K-1\)=8"):
        resolve_config("mnist-small", {"image_size": 30, "attn_resolutions": ()})
    with pytest.raises(TrainError, match=r"image_size=36: expected a multiple of patch_size\*2\*\*\(K-1\)=16"):
        resolve_config("mnist-small", {"image_size": 36, "patch_size": 4, "attn_resolutions": ()})


def test_the_preset_carries_its_recipe_and_flags_override_it():
    opts = Train().options()  # the README's `python cli.py train`: mnist-small as tuned
    assert (opts.recipe.warmup_steps, opts.recipe.grad_clip, opts.recipe.ema_warmup) == (100, 1.0, True)
    assert opts.config.unet.patch_size == 2 and opts.config.train.learning_rate == 1e-3
    opts = Train(warmup_steps=7, grad_clip=0.0, adam_eps=1e-6).options()
    assert (opts.recipe.warmup_steps, opts.recipe.grad_clip, opts.recipe.adam_eps) == (7, 0.0, 1e-6)
    assert Train(ema_warmup=False).options().recipe.ema_warmup is False
    assert Train(preset="ucf101").options().recipe.warmup_steps == 200
    with pytest.raises(TrainError, match="warmup_steps=-1"):
        Train(warmup_steps=-1).options()


def test_batch_that_cannot_fit_in_memory(tmp_path):
    config = resolve_config("ucf101", {})
    with pytest.raises(TrainError, match=r"needs about .* GiB per device, but .* GiB is available"):
        check_memory(config, per_device_batch=128, fsdp=1, available=24 * 2**30)
    with pytest.raises(TrainError, match="--batch-size"):
        train(Train(preset="ucf101", run_dir=str(tmp_path / "run"), data_parallel=1).options())


def test_refuses_an_existing_run_dir_and_resume_without_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "something").write_text("x")
    with pytest.raises(TrainError, match="already exists"):
        train(_opts(tmp_path))
    with pytest.raises(TrainError, match="no checkpoint"):
        train(_opts(tmp_path, resume=True))
    assert (run / "something").exists()


def test_checkpoint_from_another_config(tmp_path):
    """--resume takes the saved configuration: a flag given explicitly that differs from it is
    refused by its CLI name; through the API (TrainOptions) the checkpoint's configuration is
    compared field by field."""
    other = resolve_config("tiny", dict(channels=16, channel_mult=(1,), attn_resolutions=(), image_size=8,
                                        frames=2, image_frames=1, in_channels=1, out_channels=1, batch_size=2))
    ckpt.save_checkpoint(tmp_path / "run", 5, {"params": {}}, {"config": config_to_dict(other), "seed": 0,
                                                              "recipe": {}})
    with pytest.raises(TrainError, match=r"--resume continues the run saved in .*meta.json, but --channels 8 "
                                         r"\(the run: 16\)"):
        _opts(tmp_path, resume=True)
    opts = dataclasses.replace(_opts(tmp_path), resume=True)  # the flags' config, not the saved one
    with pytest.raises(TrainError, match=r"another configuration.*unet.channels: 16 \(checkpoint\) vs 8"):
        train(opts)


