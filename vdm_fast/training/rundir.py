"""The run directory: checked before any long work, recognisable as ours, and what is written in it.

    run.json           the marker: program, resolved configuration, recipe, seed, data, options
    metrics.jsonl      one line per logging interval (step, loss, lr, grad norm, steps/s, ...)
    loss.png           the loss curve
    summary.json       the final summary
    samples/step_N.{gif,png,mp4}   EMA samples (GIF / MP4 video, PNG grid: rows = videos)
    checkpoints/step_N/            `vdm_ref.support.checkpoint` format, the newest `keep` kept

`--overwrite` deletes a directory only when it is recognisably a run directory of this program:
it holds run.json (or the config.json of runs made before run.json existed) and nothing but the
entries above. A folder with anything else in it, the --data-dir itself, a folder holding the
--data-dir, or a symbolic link is never deleted; the run refuses with one line instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vdm_ref.configs import config_from_dict, config_to_dict
from vdm_ref.support import checkpoint as ckpt
from vdm_ref.train import Recipe, recipe_dict

from .errors import TrainError

MARKER = "run.json"
LEGACY_MARKER = "config.json"  # run directories written before run.json
PROGRAM = "vdm"
_TOP_LEVEL = {MARKER, LEGACY_MARKER, "metrics.jsonl", "loss.png", "loss.tmp.png", "summary.json",
              "samples", ckpt.CHECKPOINT_DIR}
_SAMPLE = re.compile(r"^step_\d+\.(gif|png|mp4)$")
_CHECKPOINT = re.compile(r"^(step_\d{8,}|\.tmp_.*|\.old_.*)$")


# ---------------------------------------------------------------------------------------------
# Checks, before any long work


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, data_dir: str | None = None) -> None:
    """TrainError (one line, naming the flag) unless the run can use `run_dir`: a folder (or a
    path that can become one) that is writable, not inside or equal to --data-dir, and either
    empty/new, or resumable (--resume), or recognisably ours (--overwrite). Creates nothing."""
    if resume and overwrite:
        raise TrainError(f"--resume and --overwrite contradict each other: --resume continues the run "
                         f"in {run_dir}, --overwrite deletes it; give one of them")
    _check_data_overlap(run_dir, data_dir, overwrite)
    _check_writable(run_dir)
    exists = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not ckpt.list_checkpoints(run_dir):
            raise TrainError(f"--resume: no checkpoint in {run_dir} to resume from (expected "
                             f"{run_dir}/checkpoints/step_*); start a new run without --resume")
    elif exists and not overwrite:
        raise TrainError(f"--run-dir {run_dir} already exists and is not empty: pass --resume to "
                         "continue it, --overwrite to delete it and start over, or choose another --run-dir")
    elif exists:
        foreign = foreign_entries(run_dir)
        if foreign:
            raise TrainError(f"--overwrite refuses to delete --run-dir {run_dir}: not recognisably a run "
                             f"directory of this program ({foreign}); move your files or choose another --run-dir")


def _check_data_overlap(run_dir: Path, data_dir: str | None, overwrite: bool) -> None:
    if data_dir is None:
        return
    run, data = run_dir.resolve(), Path(data_dir).resolve()
    if run == data or data in run.parents:
        raise TrainError(f"--run-dir {run_dir} is {'the' if run == data else 'inside the'} --data-dir "
                         f"{data_dir}: the run's samples would become training videos; choose a --run-dir "
                         "outside the data folder")
    if overwrite and run in data.parents:
        raise TrainError(f"--overwrite would delete --data-dir {data_dir}, which is inside --run-dir "
                         f"{run_dir}; choose another --run-dir")


def _check_writable(run_dir: Path) -> None:
    """The nearest existing folder on the way to run_dir must be a folder we can write in (an
    actual probe file, created and removed: permission bits do not bind root)."""
    existing = run_dir
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == run_dir else f"cannot be made: {existing} is a file"
        raise TrainError(f"--run-dir {run_dir} {what}; expected a folder (or a path where one can be made)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".vdm-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise TrainError(f"--run-dir {run_dir}: cannot write in {existing} ({e.strerror or e}); "
                         "choose a writable --run-dir") from None


def foreign_entries(run_dir: Path) -> str:
    """'' when run_dir is recognisably a run directory of this program (its marker and nothing
    but the run's own outputs); else a short description of what is not ours."""
    if run_dir.is_symlink():
        return "it is a symbolic link"
    if not _has_marker(run_dir):
        return f"no {MARKER} marker"
    odd = [p.name for p in run_dir.iterdir() if p.name not in _TOP_LEVEL]
    samples, checkpoints = run_dir / "samples", run_dir / ckpt.CHECKPOINT_DIR
    if samples.is_dir():
        odd += [f"samples/{p.name}" for p in samples.iterdir() if not (_SAMPLE.match(p.name) and p.is_file())]
    if checkpoints.is_dir():
        for p in checkpoints.iterdir():
            if not (_CHECKPOINT.match(p.name) and p.is_dir() and not p.is_symlink()):
                odd.append(f"checkpoints/{p.name}")
            else:
                odd += [f"checkpoints/{p.name}/{q.name}" for q in p.iterdir()
                        if q.name not in ("arrays.npz", "meta.json")]
    if odd:
        more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
        return "it holds " + ", ".join(sorted(odd)[:3]) + more
    return ""


def _has_marker(run_dir: Path) -> bool:
    for name, ok in ((MARKER, lambda d: d.get("program") == PROGRAM),
                     (LEGACY_MARKER, lambda d: "config" in d and "rng" in d)):
        try:
            if ok(json.loads((run_dir / name).read_text())):
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return False


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, data_dir: str | None = None) -> None:
    """`check_run_dir`, then (with --overwrite) delete the recognised run directory, and create it."""
    check_run_dir(run_dir, resume=resume, overwrite=overwrite, data_dir=data_dir)
    if resume:
        return
    if overwrite and run_dir.is_dir() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainError(f"--run-dir {run_dir}: cannot create it ({e.strerror or e})") from None


# ---------------------------------------------------------------------------------------------
# Metadata: the marker, checkpoints' meta.json, and what a resumed run must share


def run_metadata(opts, step: int, extra: dict | None = None) -> dict:
    """What a checkpoint (and run.json) records of a run: configuration, recipe, backend, seed,
    data, the position in the data and the randomness rule, and `extra`."""
    return dict({"config": config_to_dict(opts.config), "recipe": recipe_dict(opts.recipe),
                 "backend": opts.backend, "seed": opts.seed,
                 "data": json.loads(json.dumps(dataclasses.asdict(opts.data))),
                 "data_position": {"next_batch": step, "examples_seen": step * opts.config.train.batch_size},
                 "rng": {"rule": "fold_in(key(seed), step); batch indices default_rng([seed, 1, step]), "
                         "row b default_rng([seed, 1, step, b])",
                         "seed": opts.seed, "next_step": step}}, **(extra or {}))


def write_marker(run_dir: Path, opts, step: int, extra: dict | None = None) -> None:
    """run.json: the program's marker with the run's metadata and options."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        program_version = version("vdm")
    except PackageNotFoundError:
        program_version = "unknown"
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("config", "recipe", "data")}
    meta = dict(run_metadata(opts, step, extra), program=PROGRAM, version=program_version, options=options,
                about="a training run directory of `python cli.py train`")
    (run_dir / MARKER).write_text(json.dumps(meta, indent=1, default=str))


def saved_run(run_dir: Path) -> tuple[dict, Path] | None:
    """(metadata, the file it came from) of a run directory: run.json, else the legacy
    config.json, else the newest checkpoint's meta.json; None when there is none."""
    run_dir = Path(run_dir)
    candidates = [run_dir / MARKER, run_dir / LEGACY_MARKER]
    candidates += [path / "meta.json" for _, path in reversed(ckpt.list_checkpoints(run_dir))]
    for path in candidates:
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("config"), dict):
            return meta, path
    return None


def check_resume_compatible(meta: dict, opts, path) -> None:
    """TrainError (one line) naming what differs between a checkpoint's run and this one (the
    number of steps and the preview sampler's γ may differ: they do not change the run). Fields
    the checkpoint predates take their defaults."""
    saved = meta.get("config", {})
    try:
        saved = config_to_dict(config_from_dict(saved))
    except ValueError:
        pass  # compared as stored: the differences name what does not fit
    diffs = ckpt.config_differences(saved, config_to_dict(opts.config))
    diffs = [d for d in diffs if not d.startswith(("train.train_steps", "diffusion.gamma", "notes"))]
    saved_recipe = meta.get("recipe", {})
    try:  # fields the checkpoint predates take their defaults
        saved_recipe = recipe_dict(Recipe(**saved_recipe))
    except (TypeError, ValueError):
        pass  # compared as stored
    diffs += ckpt.config_differences(saved_recipe, recipe_dict(opts.recipe), "recipe.")
    if meta.get("seed") != opts.seed:
        diffs.append(f"seed: {meta.get('seed')!r} (checkpoint) vs {opts.seed!r} (now)")
    if diffs:
        raise TrainError(f"checkpoint {path} was made with another configuration, so resuming would not "
                         f"continue the same run ({'; '.join(diffs)}); give the flags the checkpoint's values "
                         "(a preset's defaults may have changed since it was made) or start a new --run-dir")


# ---------------------------------------------------------------------------------------------
# Plots and samples


def smooth_loss(steps: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The loss curve's trend for a log-scale plot: exp(mean log loss) over a window of k logged
    points centred on each plotted step (k = a tenth of the points, odd). Centred, so that the
    steep first hundreds of steps do not hold the curve up for a window's length after them, as
    a trailing mean does; geometric, because the axis is logarithmic. None when there are fewer
    than 2k points."""
    k = max(3, len(loss) // 10) | 1
    if len(loss) <= 2 * k:
        return None
    smooth = np.exp(np.convolve(np.log(np.maximum(loss, 1e-30)), np.ones(k) / k, mode="valid"))
    return steps[k // 2: k // 2 + len(smooth)], smooth, k


def append_metrics(metrics_path: Path, row: dict) -> None:
    """Append `row` as one JSON line; after a line cut short (a killed run, a full disk), on a
    line of its own."""
    with open(metrics_path, "ab+") as f:
        cut = f.tell() > 0 and (f.seek(-1, 2), f.read(1))[1] != b"\n"
        f.write((b"\n" if cut else b"") + (json.dumps(row) + "\n").encode())


def read_metrics(metrics_path: Path) -> list[dict]:
    """The rows of metrics.jsonl, skipping lines that are not whole JSON objects (cut short)."""
    rows = []
    for line in metrics_path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def plot_losses(metrics_path: Path, out: Path) -> None:
    """loss.png: the logged training loss against the step (log scale), with a running mean.
    Nothing is drawn before the first logged loss (no metrics.jsonl yet)."""
    if not metrics_path.is_file():
        return
    rows = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss (per log interval)")
    smoothed = smooth_loss(steps, loss)
    if smoothed is not None:
        at, smooth, k = smoothed
        ax.plot(at, smooth, lw=1.6, label=f"centred geometric mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("Eq. 2 loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)


def write_samples(videos: np.ndarray, out_dir: Path, name: str, *, mp4: bool = True) -> dict:
    """Write EMA samples as GIF (and MP4) of all videos side by side, and a PNG frame grid."""
    from vdm_ref.support.data import write_frame_grid, write_video

    out_dir.mkdir(parents=True, exist_ok=True)
    v = np.clip(np.asarray(videos, np.float32), -1.0, 1.0)
    b, t, h, w, c = v.shape
    cols = int(math.ceil(math.sqrt(b)))
    rows = int(math.ceil(b / cols))
    pad = np.full((rows * cols - b, t, h, w, c), -1.0, np.float32)
    tiled = np.concatenate([v, pad]).reshape(rows, cols, t, h, w, c)
    tiled = np.pad(tiled, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0)
    movie = tiled.transpose(2, 0, 3, 1, 4, 5).reshape(t, rows * (h + 2), cols * (w + 2), c)
    movie = np.repeat(np.repeat(movie, 2, axis=1), 2, axis=2)  # 2x upscale for viewing
    paths = {"gif": str(write_video(out_dir / f"{name}.gif", movie, fps=4))}
    if mp4:
        try:
            paths["mp4"] = str(write_video(out_dir / f"{name}.mp4", movie, fps=4))
        except Exception as e:  # noqa: BLE001 - MP4 is optional (codec availability)
            paths["mp4_error"] = str(e)
    paths["png"] = str(write_frame_grid(out_dir / f"{name}.png", v))
    return paths
