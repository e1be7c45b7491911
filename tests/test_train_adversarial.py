"""`python cli.py train` as an adversary would use it: nothing the user owns is deleted, a damaged
checkpoint is named and skipped, and every bad input ends in one line naming a real flag or file,
before any long work (issue 13, training cases).

The CLI is called in-process (`cli.main`). Where a test must show that a refusal comes before the
long work, the compiled step is replaced by a sentinel (`reached_step`): a command that gets past
every check raises `ReachedStep` instead of compiling. One real run (a one-level U-Net on 8x8
Moving MNIST, 2 steps) is shared by the tests that need checkpoints.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from vdm_fast.training import TrainError
from vdm_fast.training import loop as training_loop
from vdm_fast.training.options import resolve_config
from vdm_fast.training.rundir import MARKER, prepare_run_dir
from vdm_ref.support import checkpoint as ckpt

MINI = ["--preset", "tiny", "--channels", "8", "--channel-mult", "1", "--attn-resolutions",
        "--image-size", "8", "--frames", "2", "--image-frames", "1", "--in-channels", "1",
        "--out-channels", "1", "--mnist-digit-size", "6", "--batch-size", "2", "--data-parallel", "1",
        "--warmup-steps", "2", "--num-samples", "0", "--no-progress"]


class ReachedStep(Exception):
    """Every check passed: the command asked for the compiled step."""


@pytest.fixture
def reached_step(monkeypatch):
    """Replace the compiled step by the ReachedStep sentinel (no compilation in the test)."""

    def sentinel(*args, **kwargs):
        raise ReachedStep

    monkeypatch.setattr(training_loop, "make_step", sentinel)


def run_cli(*argv) -> tuple[int | None, str, str]:
    """(exit code or None on a normal return, stdout, stderr) of `python cli.py train ARGV`."""
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["train", *map(str, argv)])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def refusal(*argv) -> str:
    """The one-line error of a command that must be refused; asserts the shape of the refusal."""
    code, _, err = run_cli(*argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def snapshot(root: Path, skip: Path | None = None) -> dict:
    """{relative path: SHA-1} of every file under root (except under `skip`)."""
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not (skip is not None and (p == skip or skip in p.parents)):
            files[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return files


# ---------------------------------------------------------------------------------------------
# One real run: 2 steps, a checkpoint every step, the log every 5 (case 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step run; returns its run directory (copied by tests that change it)."""
    run = tmp_path_factory.mktemp("adversarial") / "run"
    code, out, err = run_cli(*MINI, "--run-dir", run, "--steps", 2, "--checkpoint-every", 1, "--log-every", 5)
    assert code is None, err
    assert "trained steps 0 -> 2" in out and "coherence" not in out  # no samples: no coherence claimed
    return run


def test_checkpoint_every_below_log_every_does_not_crash(trained):
    """Before: FileNotFoundError metrics.jsonl from the loss plot at the first checkpoint."""
    assert [s for s, _ in ckpt.list_checkpoints(trained)] == [1, 2]
    assert (trained / "loss.png").is_file()
    meta = json.loads((trained / MARKER).read_text())
    assert meta["program"] == "vdm" and meta["config"]["unet"]["channels"] == 8


def test_resume_takes_the_saved_configuration_and_skips_a_corrupt_checkpoint(trained, tmp_path):
    """--resume with no flags continues the saved run; a bit-flipped newest checkpoint is named on
    one line and the newest intact one is used instead (the same configuration as the fixture's
    run, so the compiled step is reused)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    npz = run / "checkpoints" / "step_00000002" / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match=r"step_00000002/arrays.npz is corrupt .*: use another checkpoint"):
        ckpt.load_checkpoint(npz.parent)
    code, out, err = run_cli("--run-dir", run, "--resume", "--no-progress")
    assert code is None, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "step_00000002" in warnings[0] and "step_00000001" in warnings[0]
    assert "trained steps 1 -> 2" in out
    arrays, meta = ckpt.load_checkpoint(run)  # step 2 saved again, intact
    assert meta["step"] == 2 and meta["config"]["unet"]["channels"] == 8
    assert ckpt.latest_intact_checkpoint(run) == (run / "checkpoints" / "step_00000002", [])
    assert json.loads((run / MARKER).read_text())["options"]["checkpoint_every"] == 1
    # an explicit flag that contradicts the saved run is refused by its CLI name
    line = refusal("--run-dir", run, "--resume", "--channels", 16)
    assert "--channels 16 (the run: 8)" in line


# ---------------------------------------------------------------------------------------------
# Case 3: checkpoints verified on load


def _small_checkpoint(run_dir, step):
    return ckpt.save_checkpoint(run_dir, step, {"params": {"w": np.arange(4096, dtype=np.float32)}}, {"seed": 0})


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "bad-json"])
def test_damaged_checkpoints_raise_one_line_naming_the_file(tmp_path, damage):
    path = _small_checkpoint(tmp_path, 1)
    npz = path / "arrays.npz"
    raw = npz.read_bytes()
    if damage == "truncate":
        npz.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        npz.write_bytes(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    elif damage == "garbage":
        npz.write_bytes(b"not a zip file at all")
    else:
        (path / "meta.json").write_text("{ broken")
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "use another checkpoint" in message
    assert isinstance(info.value, ValueError)
    # an older checkpoint without a checksum still loads, unverified
    old = _small_checkpoint(tmp_path / "old", 1)
    meta = json.loads((old / "meta.json").read_text())
    del meta["arrays_sha256"]
    (old / "meta.json").write_text(json.dumps(meta))
    assert ckpt.load_checkpoint(old)[1]["step"] == 1


def test_latest_intact_checkpoint_passes_over_damaged_ones(tmp_path):
    for step in (1, 2, 3):
        _small_checkpoint(tmp_path, step)
    (ckpt.checkpoint_dir(tmp_path) / "step_00000003" / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")
    path, skipped = ckpt.latest_intact_checkpoint(tmp_path)
    assert path.name == "step_00000002"
    assert [p.name for p, _ in skipped] == ["step_00000003"] and "step_00000003" in skipped[0][1]


def test_resume_with_only_corrupt_checkpoints_is_refused(tmp_path, reached_step):
    path = _small_checkpoint(tmp_path / "run", 1)
    (path / "arrays.npz").write_bytes(b"garbage")
    line = refusal(*MINI, "--run-dir", tmp_path / "run", "--resume")
    assert "--resume: no intact checkpoint" in line and "step_00000001" in line


# ---------------------------------------------------------------------------------------------
# Case 1: --overwrite deletes only a run directory of this program


def test_overwrite_refuses_a_folder_that_is_not_a_run_directory(tmp_path, reached_step):
    """Before: shutil.rmtree on any folder (a folder holding a text file was wiped)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    line = refusal(*MINI, "--run-dir", folder, "--overwrite")
    assert f"--overwrite refuses to delete --run-dir {folder}" in line and "no run.json" in line
    assert (folder / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_run_directory_holding_a_user_file(tmp_path, reached_step):
    run = tmp_path / "run"
    with pytest.raises(ReachedStep):
        run_cli(*MINI, "--run-dir", run)  # a run directory of ours (run.json written)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "my_model.pt").write_text("mine")
    line = refusal(*MINI, "--run-dir", run, "--overwrite")
    assert "checkpoints/my_model.pt" in line
    assert (run / "checkpoints" / "my_model.pt").exists() and (run / MARKER).exists()


def test_overwrite_never_deletes_the_data_folder(tmp_path, reached_step):
    """Before: --data-dir X --run-dir X --overwrite deleted the user's videos."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.gif").write_bytes(b"GIF89a user video")
    before = snapshot(tmp_path)
    line = refusal("--preset", "tiny", "--data-dir", videos, "--run-dir", videos, "--overwrite")
    assert "--run-dir" in line and "--data-dir" in line
    line = refusal("--preset", "tiny", "--data-dir", videos, "--run-dir", videos / "run")
    assert "inside the --data-dir" in line
    (tmp_path / MARKER).write_text(json.dumps({"program": "vdm", "config": {}}))
    line = refusal("--preset", "tiny", "--data-dir", videos, "--run-dir", tmp_path, "--overwrite")
    assert "--overwrite would delete --data-dir" in line
    (tmp_path / MARKER).unlink()
    assert snapshot(tmp_path) == before


def test_overwrite_deletes_a_recognised_run_directory(tmp_path):
    run = tmp_path / "run"
    _small_checkpoint(run, 1)
    (run / MARKER).write_text(json.dumps({"program": "vdm", "config": {}}))
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "samples").mkdir()
    (run / "samples" / "step_00000001.gif").write_bytes(b"GIF89a")
    prepare_run_dir(run, resume=False, overwrite=True)
    assert run.is_dir() and not any(run.iterdir())


# ---------------------------------------------------------------------------------------------
# Case 4: the run directory must be usable, checked first


def test_run_dir_that_is_a_file_or_under_a_file(tmp_path, reached_step):
    """Before: NotADirectoryError traceback."""
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert refusal(*MINI, "--run-dir", f) == f"error: --run-dir {f} is a file; expected a folder (or a path where one can be made)"
    line = refusal(*MINI, "--run-dir", f / "run")
    assert f"--run-dir {f / 'run'} cannot be made: {f} is a file" in line
    assert f.read_text() == "x"


def test_unwritable_run_dir_is_refused_before_any_work(tmp_path, reached_step):
    """Before: PermissionError traceback at mkdir. As root, permission bits do not stop writes,
    so there the unwritable place is a path under a regular file (what root cannot write either)."""
    if os.geteuid() == 0:
        parent = tmp_path / "readonly"
        parent.write_text("a regular file")
        expected = "is a file"
    else:
        parent = tmp_path / "readonly"
        parent.mkdir()
        parent.chmod(0o500)
        expected = "cannot write in"
    try:
        line = refusal(*MINI, "--run-dir", parent / "run")
    finally:
        if parent.is_dir():
            parent.chmod(0o700)
    assert "--run-dir" in line and expected in line
    assert not (parent / "run").exists()


# ---------------------------------------------------------------------------------------------
# Case 5: silent wrong work


def test_in_channels_without_out_channels_names_both_flags(reached_step):
    """Before: trained with a loss broadcasting 1 against 3 channels, then crashed in sampling."""
    line = refusal("--preset", "tiny", "--in-channels", "1")
    assert "--in-channels 1" in line and "--out-channels" in line
    line = refusal("--preset", "mnist-small", "--in-channels", "3")
    assert "--in-channels 3" in line and "--out-channels" in line


@pytest.mark.parametrize("minutes", ["0", "-1", "nan"])
def test_minutes_must_be_positive(tmp_path, reached_step, minutes):
    """Before: accepted; wrote a step-0 checkpoint."""
    line = refusal(*MINI, "--run-dir", tmp_path / "run", "--minutes", minutes)
    assert line.startswith(f"error: --minutes {float(minutes)}: expected a positive number of minutes")
    assert not (tmp_path / "run").exists()


def test_coherence_is_logged_for_moving_mnist_only(tmp_path, monkeypatch):
    """The shift coherence measures Moving MNIST's rigid motion; on a user's folder it is left out."""
    import dataclasses

    from vdm_fast import sharding as shd
    from vdm_fast.training import Train
    from vdm_fast.training import _sample
    from vdm_fast.training.data import DataOptions, make_dataset

    monkeypatch.setattr(_sample, "sample_videos", lambda *a, num, config, **k: np.zeros(
        (num, config.unet.frames, config.unet.image_size, config.unet.image_size, 1), np.float32))
    kw = dict(preset="tiny", channels=8, channel_mult=(1,), attn_resolutions=(), image_size=8, frames=2,
              image_frames=0, num_samples=1, progress=False)
    for data_dir, logged in ((None, True), (str(tmp_path / "videos"), False)):
        run_dir = tmp_path / f"run-{logged}"
        run_dir.mkdir()
        opts = dataclasses.replace(Train(run_dir=str(run_dir), **kw).options(), data=DataOptions(data_dir),
                                   mp4=False)
        ds = make_dataset(opts.config, DataOptions())  # Moving MNIST either way: only the flag differs
        run = training_loop._Run(opts, ds, shd.data_fsdp_mesh(1, 1), 0, None, training_loop.initial_params(opts), True)
        info = run.samples(run.impl.state, 1)
        logged_row = json.loads((run_dir / "metrics.jsonl").read_text())
        assert ("coherence" in info) is logged and ("coherence" in logged_row) is logged


# ---------------------------------------------------------------------------------------------
# Case 6: friction


def _train_flags() -> set[str]:
    code, out, _ = run_cli("--help")
    assert code == 0
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


def test_help_shows_the_preset_value_not_none(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "(default: None)" not in out
    assert "(default: from --preset; mnist-small: 8)" in out  # --batch-size
    assert "(default: from --preset; mnist-small: 20000)" in out  # --steps


def test_messages_name_flags_that_exist():
    """Before: '--train-steps', which is not a flag (the flag is --steps)."""
    with pytest.raises(TrainError) as info:
        resolve_config("tiny", {"train_steps": 0})
    assert "--steps 0" in str(info.value) and "--train-steps" not in str(info.value)


def test_preset_tiny_runs_on_the_default_data():
    """The data decides the channels (Moving MNIST is grayscale), the preset the rest."""
    from vdm_fast.training import Train
    from vdm_fast.training.data import Batcher, make_dataset

    opts = Train(preset="tiny").options()
    u = opts.config.unet
    assert (u.in_channels, u.out_channels, u.channels) == (1, 1, 8)
    batch = Batcher(make_dataset(opts.config, opts.data), opts.config, 0)(0)
    assert batch["x"].shape == (4, u.frames + opts.config.train.image_frames, 8, 8, 1)


def test_progress_total_follows_minutes():
    """Before: the bar showed the preset's 20,000 steps and an ETA of hours under --minutes."""
    from types import SimpleNamespace

    from vdm_fast.training import Train

    opts = Train(progress=False, minutes=0.05).options()  # mnist-small: 20,000 steps
    rows = []
    run = SimpleNamespace(opts=opts, start_step=0, is_main=True, flops_per_example=1.0, log=rows.append,
                          t_start=time.perf_counter())
    progress = training_loop._Progress(run, deadline=time.perf_counter() + 3.0)
    assert progress.bar.total is None  # no rate measured yet
    m = {"learning_rate": 1e-3, "ema_decay": 0.9}
    for step in range(1, opts.log_every + 1):
        time.sleep(0.002)
        progress.update(step, 0.5, 1.0, m, peak=1.0)
    progress.close()
    rate = rows[-1]["steps_per_s"]
    assert opts.log_every <= progress.bar.total <= opts.log_every + rate * 3.0 + 1 < 20_000


# ---------------------------------------------------------------------------------------------
# Random flags: a one-line error or success, never a traceback, nothing outside the run dir touched

NUMBER_FLAGS = ["--steps", "--minutes", "--batch-size", "--channels", "--image-size", "--frames",
                "--log-every", "--checkpoint-every", "--keep-checkpoints", "--learning-rate", "--fsdp",
                "--data-parallel", "--num-samples", "--sample-every", "--gamma", "--dropout",
                "--in-channels", "--out-channels", "--mnist-digits", "--mnist-digit-size", "--image-frames"]
VALUES = ["0", "-1", "1", "2", "3", "x", "1e9", "nan", "0.5", "", "None"]
RUN_DIRS = ["new", "file", "under-file", "user-folder", "corrupt-run", "data", "", None]
DATA_DIRS = [None, "missing", "empty", "file", "notes"]


def _layout(root: Path) -> dict:
    (root / "file.txt").write_text("user file")
    (root / "user-folder").mkdir()
    (root / "user-folder" / "thesis.tex").write_text("user work")
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("not a video")
    bad = _small_checkpoint(root / "corrupt-run", 1)
    (bad / "arrays.npz").write_bytes(b"PK garbage")
    return {"new": root / "new-run", "file": root / "file.txt", "under-file": root / "file.txt" / "run",
            "user-folder": root / "user-folder", "corrupt-run": root / "corrupt-run", "empty": root / "empty",
            "missing": root / "missing", "notes": root / "notes"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.lists(st.tuples(st.sampled_from(NUMBER_FLAGS), st.sampled_from(VALUES)), max_size=3),
       run_dir=st.sampled_from(RUN_DIRS), data_dir=st.sampled_from(DATA_DIRS),
       resume=st.booleans(), overwrite=st.booleans())
def test_random_flags_end_in_one_line_or_success(reached_step, flags, run_dir, data_dir, resume, overwrite):
    real_flags = _FLAGS.setdefault("train", _train_flags())
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = _layout(root)
        argv = list(MINI)
        for name, value in flags:
            argv += [name, value]
        if data_dir is not None:
            argv = [a for a in argv if a not in ("--mnist-digit-size", "6")] + ["--data-dir", paths[data_dir]]
        target = None
        if run_dir is not None:
            target = (paths[data_dir] if data_dir else paths["empty"]) if run_dir == "data" else \
                paths.get(run_dir, Path(run_dir))
            argv += ["--run-dir", target]
        argv += ["--resume"] * resume + ["--overwrite"] * overwrite
        run_path = root / (target if target is not None else "runs/tiny")
        run_path = None if run_path.resolve() == root.resolve() else run_path  # --run-dir '': the folder itself
        before = snapshot(root, skip=run_path)
        os.chdir(root)  # the default --run-dir (runs/<preset>) lands in the temporary folder
        try:
            code, out, err = run_cli(*argv)
        except ReachedStep:  # every check passed
            code, out, err = None, "", ""
        finally:
            os.chdir(cwd)
        assert "Traceback" not in out + err
        if code is not None:
            assert code == 2, (argv, code, err)
            if err.startswith("error: "):  # ours (tyro's own parse errors are boxed, multi-line)
                assert len(err.strip().splitlines()) == 1, err
                for name in re.findall(r"--[a-z][a-z0-9-]*", err):
                    assert name in real_flags or name == "--mnist-", (name, err)
        assert snapshot(root, skip=run_path) == before, argv


_FLAGS: dict = {}


# ---------------------------------------------------------------------------------------------
# --init-from: a new run that starts from another checkpoint's parameters


def test_init_from_starts_from_the_checkpoint_and_names_the_new_arrays(trained, tmp_path, monkeypatch):
    """A class-conditional run from the unconditional fixture run: every array the checkpoint
    holds is its EMA value, the class embedding (new) keeps its fresh initialisation and is named."""
    from vdm_ref.network import init

    seen = {}

    def capture(*args, params=None, **kwargs):
        seen["params"] = params
        raise ReachedStep

    monkeypatch.setattr(training_loop, "make_step", capture)
    with pytest.raises(ReachedStep):
        cli.main(["train", *MINI, "--run-dir", str(tmp_path / "ft"), "--init-from", str(trained),
                  "--conditioning", "class", "--steps", "2"])
    saved, _ = ckpt.load_checkpoint(trained)
    got, ema = ckpt.flatten(seen["params"]), ckpt.flatten(saved["ema"])
    new = sorted(set(got) - set(ema))
    assert new and all(k.startswith("emb/class") for k in new), new
    for k in ema:
        np.testing.assert_array_equal(got[k], ema[k], err_msg=k)
    fresh = ckpt.flatten(init(resolve_config("tiny", {}).unet, 0))
    assert any(not np.array_equal(got[k], fresh[k]) for k in ema if k in fresh and got[k].shape == fresh[k].shape)


@pytest.mark.parametrize("flags, message", [
    (["--init-from", "no/such/checkpoint"], r"--init-from: no checkpoint at 'no/such/checkpoint'"),
    (["--channels", "16", "--norm-groups", "2"], r"--init-from: .*parameters of another shape than this model's: "),
])
def test_init_from_refusals_are_one_line(trained, tmp_path, reached_step, flags, message):
    argv = [*MINI, "--run-dir", tmp_path / "ft"]
    if "--init-from" not in flags:
        argv += ["--init-from", trained]
    line = refusal(*argv, *flags)
    assert re.search(message, line), line
    assert not (tmp_path / "ft").exists()  # refused before the run directory is made


def test_init_from_with_resume_is_refused(trained, tmp_path, reached_step):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    line = refusal("--run-dir", run, "--resume", "--init-from", trained)
    assert "--init-from starts a new run" in line and "give one of them" in line, line


def test_warm_start_copies_matching_arrays_only(tmp_path):
    params = {"a": np.zeros((2, 3), np.float32), "b": {"c": np.ones(4, np.float32)}, "new": np.full(2, 7.0)}
    ckpt.save_checkpoint(tmp_path, 1, {"ema": {"a": np.full((2, 3), 5.0), "b": {"c": np.arange(4.0)},
                                              "old": np.zeros(3)}}, {"config": {}})
    merged, fresh, unused = ckpt.warm_start(params, tmp_path)
    np.testing.assert_array_equal(merged["a"], np.full((2, 3), 5.0))
    np.testing.assert_array_equal(merged["b"]["c"], np.arange(4.0))
    np.testing.assert_array_equal(merged["new"], np.full(2, 7.0))
    assert merged["a"].dtype == np.float32 and (fresh, unused) == (["new"], ["old"])
    with pytest.raises(ckpt.CheckpointError, match="a: \\(2, 3\\) in the checkpoint, \\(3, 2\\) here"):
        ckpt.warm_start({"a": np.zeros((3, 2))}, tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="shares no parameter"):
        ckpt.warm_start({"zzz": np.zeros(1)}, tmp_path)


def test_sigterm_checkpoints_the_state_and_ends_in_one_line(trained, tmp_path, monkeypatch):
    """`kill` (SIGTERM, also a scheduler's preemption) mid-run: the step reached is checkpointed
    and marked interrupted, the command ends with code 130 and one line saying how to resume.
    The fixture's configuration, so the compiled step is reused."""
    import signal

    account = training_loop._Run.account

    def kill_after_first_step(self, step, metrics, progress):
        account(self, step, metrics, progress)
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    class Unhandled(Exception):
        """The loop did not take SIGTERM over (raised instead of killing the test process)."""

    def outside(signum, frame):
        raise Unhandled

    monkeypatch.setattr(training_loop._Run, "account", kill_after_first_step)
    previous = signal.signal(signal.SIGTERM, outside)
    try:
        run = tmp_path / "run"
        code, _, err = run_cli(*MINI, "--run-dir", run, "--steps", 2, "--checkpoint-every", 5, "--log-every", 5)
        assert signal.getsignal(signal.SIGTERM) is outside  # the loop's handler is removed after the run
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: ") and "--resume" in err, err
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [1]
    _, meta = ckpt.load_checkpoint(run)
    assert meta["stopped"] == "interrupted"


def test_sigterm_dropped_inside_a_garbage_collector_callback_still_stops_the_run(trained, tmp_path, monkeypatch):
    """Python runs the SIGTERM handler wherever the main thread is; inside a `gc.callbacks` hook
    (JAX registers one) its KeyboardInterrupt is printed and dropped. The loop still stops before
    its next step, checkpointed and marked interrupted (`loop.TERMINATED`)."""
    import gc
    import signal

    account = training_loop._Run.account
    dropped = []

    def kill_inside_gc(self, step, metrics, progress):
        account(self, step, metrics, progress)
        if step == 0:
            def hook(phase, info):
                if phase == "start" and hook in gc.callbacks:
                    gc.callbacks.remove(hook)
                    try:
                        os.kill(os.getpid(), signal.SIGTERM)
                        len(())  # a call: the handler runs here, inside the collector's callback
                    except KeyboardInterrupt:
                        dropped.append(step)
                        raise  # what the collector prints and drops

            gc.callbacks.append(hook)
            gc.collect()

    monkeypatch.setattr(training_loop._Run, "account", kill_inside_gc)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytest reports the dropped exception as a warning
        code, _, err = run_cli(*MINI, "--run-dir", run, "--steps", 4, "--checkpoint-every", 5, "--log-every", 5)
    assert dropped == [0]  # the interrupt was raised inside the hook, and dropped there
    assert code == 130, err  # ... and the loop stopped anyway, at its next step
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [1]
    _, meta = ckpt.load_checkpoint(run)
    assert meta["stopped"] == "interrupted"
