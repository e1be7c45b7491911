"""The training loop: checks, run directory, data, compiled steps, logs, samples, checkpoints.

`train(options)` runs one training job described by a `TrainOptions` (the fields of the
`python cli.py train` command). Before any long work it checks everything a user can get
wrong and raises `TrainError` naming the bad value and what was expected: the preset and its
overrides, the spatial size against the U-Net's 2**(K−1) factor, the data folder, the batch
against the devices and the memory, the run directory (never silently overwritten or
restarted), a checkpoint from another configuration. During training a non-finite loss stops
the run; the update that produced it is not applied, and the last good state is checkpointed.

Determinism: the batch of step n is drawn from `numpy.random.default_rng([seed, 1, n])` and the
step's randomness from `fold_in(key(seed), n)`, so a run resumed from a checkpoint at step n
continues exactly as the uninterrupted run would have.

Outputs in the run directory:

    config.json        the resolved configuration, recipe and options
    metrics.jsonl      one line per logging interval (step, loss, lr, grad norm, steps/s, ...)
    loss.png           the loss curve
    samples/step_N.{gif,png,mp4}   EMA samples (GIF / MP4 video, PNG grid: rows = videos)
    checkpoints/step_N/            `vdm_ref.support.checkpoint` format, the newest `keep` kept
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from vdm_ref.support import checkpoint as ckpt
from vdm_ref.configs import Config, DiffusionConfig, TrainConfig, UNetConfig, config_from_dict, config_to_dict, get_preset  # noqa: F401
from vdm_ref.support.eval.shift_coherence import temporal_coherence
from vdm_ref.train import Recipe, recipe_dict


class TrainError(ValueError):
    """A training job cannot start or continue; the message names the value and what was expected."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite; the last good state was checkpointed."""


# ---------------------------------------------------------------------------------------------
# Configuration from a preset and overrides

UNET_FIELDS = {f.name for f in dataclasses.fields(UNetConfig)}
DIFFUSION_FIELDS = {f.name for f in dataclasses.fields(DiffusionConfig)}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def resolve_config(preset: str, overrides: dict) -> Config:
    """The preset with every non-None override applied; TrainError on a conflict.

    overrides: field name -> value for UNetConfig / DiffusionConfig / TrainConfig fields (plus
    'train_steps'). A value the preset's other fields cannot accommodate (an attention
    resolution that is no longer a level, a channel count not divisible by the groups, a
    resolution not divisible by 2**(K−1), ...) is reported with both the flag and the preset.
    """
    try:
        base = get_preset(preset)
    except ValueError as e:
        raise TrainError(str(e)) from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - UNET_FIELDS - DIFFUSION_FIELDS - TRAIN_FIELDS
    if unknown:
        raise TrainError(f"unknown hyperparameter(s) {sorted(unknown)}")
    groups = (("unet", UNET_FIELDS, base.unet), ("diffusion", DIFFUSION_FIELDS, base.diffusion),
              ("train", TRAIN_FIELDS, base.train))
    parts = {}
    for name, fields, sub in groups:
        changes = {k: v for k, v in overrides.items() if k in fields}
        try:
            parts[name] = dataclasses.replace(sub, **changes)
        except ValueError as e:
            flags = " ".join(f"--{k.replace('_', '-')} {_fmt(v)}" for k, v in changes.items())
            raise TrainError(f"preset {preset!r} with {flags}: {e}") from None
    return dataclasses.replace(base, **parts)


def _fmt(v):
    return " ".join(str(x) for x in v) if isinstance(v, (tuple, list)) else str(v)


# ---------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Where training clips come from (the embedded Moving MNIST unless `data_dir` is given)."""

    data_dir: str | None = None
    mnist_videos: int = 100_000
    mnist_digits: int = 1
    mnist_digit_size: int = 20
    mnist_speed: tuple[float, float] = (1.0, 3.0)
    data_seed: int = 0


def make_dataset(config: Config, data: DataOptions):
    """The training Dataset for a config; TrainError for a missing, empty or unusable folder."""
    u = config.unet
    if data.data_dir is not None:
        from vdm_ref.support.data import VideoFolder

        root = Path(data.data_dir)
        if not root.exists():
            raise TrainError(f"--data-dir {root}: no such folder")
        if not root.is_dir():
            raise TrainError(f"--data-dir {root}: not a folder (expected a folder of videos)")
        if not any(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            raise TrainError(f"--data-dir {root}: the folder is empty (expected videos or folders "
                             "of frames)")
        try:
            ds = VideoFolder(root, num_frames=u.frames, resolution=u.image_size, frameskip=u.frameskip,
                             channels=u.in_channels, flip=config.train.flip)
        except ValueError as e:
            raise TrainError(f"--data-dir {root}: {e}") from None
    else:
        from vdm_ref.support.data import MovingMNIST

        if u.in_channels != 1:
            raise TrainError(f"Moving MNIST is grayscale but in_channels={u.in_channels}: use a preset "
                             "with in_channels=1 (e.g. mnist-small) or give --data-dir")
        try:
            ds = MovingMNIST(data.mnist_videos, num_frames=u.frames, resolution=u.image_size,
                             num_digits=data.mnist_digits, digit_size=min(data.mnist_digit_size, u.image_size),
                             speed=tuple(data.mnist_speed), frameskip=u.frameskip, seed=data.data_seed)
        except ValueError as e:
            raise TrainError(f"Moving MNIST: {e}") from None
    if u.conditioning == "class" and getattr(ds, "num_classes", None) is None:
        raise TrainError("class conditioning needs class labels, but the data has none (a video folder "
                         "has captions at most): use --conditioning none or text")
    if u.conditioning == "class" and ds.num_classes != u.num_classes:
        raise TrainError(f"the data has {ds.num_classes} classes but num_classes={u.num_classes}")
    if u.conditioning == "text" and ds.captions is None:
        raise TrainError("text conditioning needs captions, but the data has none: add captions.jsonl "
                         "or sidecar .txt files, or use --conditioning none")
    if config.train.image_frames > 0 and len(np.unique(ds.video_ids)) < 2:
        raise TrainError(f"joint training (--image-frames {config.train.image_frames}) draws image "
                         "frames from other videos, but the data has a single video: use --image-frames 0")
    return ds


def _clip_label(ds, i):
    if hasattr(ds, "spec"):  # MovingMNIST: avoid materialising every label
        return int(ds.spec(int(i)).labels[0])
    return int(ds.labels[int(i)])


def _clip_caption(ds, i):
    if hasattr(ds, "caption"):
        return ds.caption(int(i))
    return ds.captions[int(i)]


class Batcher:
    """Batch n of a run is a pure function of (seed, n): the clip indices come from
    `numpy.random.default_rng([seed, 1, n])`, row b's image frames and augmentation from
    `default_rng([seed, 1, n, b])`. `rows` selects this process's share of the global batch
    (multi-host): every process draws the same indices and builds only its own rows, which are
    the rows a single process would build."""

    def __init__(self, ds, config: Config, seed: int, rows: slice = slice(None), text_encoder=None):
        self.ds, self.config, self.seed, self.rows = ds, config, int(seed), rows
        self.text_encoder = text_encoder
        self._text_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, n: int) -> dict:
        from vdm_ref.support.data import joint_batch

        tc, u = self.config.train, self.config.unet
        rng = np.random.default_rng([self.seed, 1, int(n)])
        rows = range(tc.batch_size)[self.rows]
        indices = self.ds.sample_indices(tc.batch_size, rng)[self.rows]
        parts = [joint_batch(self.ds, [i], tc.image_frames, np.random.default_rng([self.seed, 1, int(n), b]))
                 for b, i in zip(rows, indices)]
        x, is_image = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        batch = {"x": x.astype(np.float32)}
        if tc.image_frames > 0:
            batch["frame_mask"] = is_image
        if u.conditioning == "class":
            labels = np.array([_clip_label(self.ds, i) for i in indices])
            batch["label"] = np.eye(u.num_classes, dtype=np.float32)[labels]
        elif u.conditioning == "text":
            batch["tokens"], batch["token_mask"] = self.captions([_clip_caption(self.ds, i) for i in indices])
        return batch

    def captions(self, captions, max_length=32):
        """Caption token embeddings [B, L, 384] and mask [B, L], memoised per caption."""
        missing = [c for c in dict.fromkeys(captions) if c not in self._text_cache]
        if missing:
            if self.text_encoder is None:
                from vdm_fast.text_encoder import TextEncoder

                self.text_encoder = TextEncoder()
            emb, mask = self.text_encoder(missing, max_length=max_length)
            emb, mask = np.asarray(emb, np.float32), np.asarray(mask, bool)
            for c, e, m in zip(missing, emb, mask):
                pad = max_length - e.shape[0]
                self._text_cache[c] = (np.pad(e, ((0, pad), (0, 0))), np.pad(m, (0, pad)))
        toks = [self._text_cache[c] for c in captions]
        return np.stack([t[0] for t in toks]), np.stack([t[1] for t in toks])


class Prefetcher:
    """Builds batches start, start+1, ... on a background thread (the GIL is released while
    XLA runs the step), so data preparation overlaps the computation."""

    def __init__(self, batcher, start: int, depth: int = 3):
        self.batcher, self.next, self.q = batcher, int(start), queue.Queue(maxsize=depth)
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        n = self.next
        try:
            while not self.stop.is_set():
                item = (n, self.batcher(n))
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        pass
                n += 1
        except BaseException as e:  # surfaced to the training thread
            self.error = e
            self.q.put((None, None))

    def get(self, n: int) -> dict:
        got, batch = self.q.get()
        if got is None:
            raise self.error
        assert got == n, (got, n)
        return batch

    def close(self):
        self.stop.set()


# ---------------------------------------------------------------------------------------------
# Memory


def available_memory_bytes() -> int:
    """Memory the step may use: the accelerator's bytes_limit, or the host's MemAvailable."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001 - some backends do not report
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def estimate_memory_bytes(config: Config, *, per_device_batch: int, fsdp: int = 1, remat: bool = False) -> int:
    """A conservative estimate of one training step's memory on one device (float32).

    State: θ, EMA, Adam's m and v, the gradient and the update: 6 × params / fsdp. Activations
    kept for the backward pass: for every block, about 8 tensors of its output size (norms,
    activations, convolution outputs) plus, for attention blocks, the logits and the softmax
    [B·frames, heads, S, S] of spatial and [B·H·W, heads, T, T] of temporal attention. With
    rematerialisation only block inputs are kept (about a quarter).
    """
    from vdm_ref.network import blocks, count_params

    u, tc = config.unet, config.train
    frames = u.frames + tc.image_frames
    b = per_device_batch
    state = 6 * count_params(u) * 4 // max(fsdp, 1)
    acts = 2 * b * frames * (u.image_size**2 * u.in_channels + u.resolutions[0] ** 2 * u.channels)  # input, conv_in
    for blk in blocks(u):
        r = u.resolutions[blk.level]
        pixels = b * frames * r * r
        acts += 8 * pixels * max(blk.in_channels, blk.out_channels)
        heads = blk.in_channels // u.head_dim
        if blk.kind == "spatial_attn":
            acts += 3 * b * frames * heads * (r * r) ** 2
        elif blk.kind == "temporal_attn":
            acts += 3 * b * r * r * heads * frames**2
    return state + 4 * acts // (4 if remat else 1)


def check_memory(config: Config, *, per_device_batch: int, fsdp: int, available: int | None = None,
                 remat: bool = False) -> int:
    """Raise TrainError when the estimated step memory exceeds what is available; return the estimate."""
    need = estimate_memory_bytes(config, per_device_batch=per_device_batch, fsdp=fsdp, remat=remat)
    have = available_memory_bytes() if available is None else available
    if need > have:
        raise TrainError(
            f"a batch of {config.train.batch_size} ({per_device_batch} per device) of "
            f"{config.unet.frames}+{config.train.image_frames} frames at {config.unet.image_size}x"
            f"{config.unet.image_size} with preset {config.name!r} needs about {need / 2**30:.1f} GiB "
            f"per device, but {have / 2**30:.1f} GiB is available: lower --batch-size, --image-frames "
            "or the model size, shard over more devices (--fsdp), use --remat, or pass --skip-memory-check")
    return need


# ---------------------------------------------------------------------------------------------
# Run directory, logging, plots, samples


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Create the run directory; refuse to touch an existing one without --resume/--overwrite."""
    if resume and overwrite:
        raise TrainError("--resume and --overwrite contradict each other: --resume continues the run "
                         f"in {run_dir}, --overwrite deletes it")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        if ckpt.latest_checkpoint(run_dir) is None:
            raise TrainError(f"--resume: no checkpoint in {run_dir} to resume from (expected "
                             f"{run_dir}/checkpoints/step_*); start a new run without --resume")
        return
    if exists and not overwrite:
        raise TrainError(f"run directory {run_dir} already exists and is not empty: pass --resume to "
                         "continue it, --overwrite to delete it and start over, or choose another --run-dir")
    if exists and overwrite:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def plot_losses(metrics_path: Path, out: Path) -> None:
    """loss.png: the logged training loss against the step (log scale), with a running mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss (per log interval)")
    k = max(2, len(loss) // 10)
    if len(loss) > 2 * k:
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.6, label=f"running mean of {k}")
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


# ---------------------------------------------------------------------------------------------
# Options and the loop


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything a training job needs (built by the CLI command `Train`)."""

    config: Config
    recipe: Recipe
    data: DataOptions
    run_dir: str
    backend: str = "fast"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    minutes: float | None = None
    log_every: int = 25
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    sample_every: int = 0
    num_samples: int = 8
    sample_steps: int = 64
    data_parallel: int = -1
    fsdp: int = 1
    skip_memory_check: bool = False
    compute_dtype: str | None = None
    remat: bool = False
    progress: bool = True
    mp4: bool = True


def _meta(opts: TrainOptions, step: int, extra=None) -> dict:
    return dict({"config": config_to_dict(opts.config), "recipe": recipe_dict(opts.recipe),
                 "backend": opts.backend, "seed": opts.seed,
                 "data": json.loads(json.dumps(dataclasses.asdict(opts.data))),
                 "data_position": {"next_batch": step, "examples_seen": step * opts.config.train.batch_size},
                 "rng": {"rule": "fold_in(key(seed), step); batch indices default_rng([seed, 1, step]), "
                         "row b default_rng([seed, 1, step, b])",
                         "seed": opts.seed, "next_step": step}}, **(extra or {}))


def check_resume_compatible(meta: dict, opts: TrainOptions, path) -> None:
    """TrainError listing what differs between a checkpoint's run and this one."""
    diffs = ckpt.config_differences(meta.get("config", {}), config_to_dict(opts.config))
    diffs = [d for d in diffs if not d.startswith(("train.train_steps", "notes"))]
    diffs += ckpt.config_differences(meta.get("recipe", {}), recipe_dict(opts.recipe), "recipe.")
    if meta.get("seed") != opts.seed:
        diffs.append(f"seed: {meta.get('seed')!r} (checkpoint) vs {opts.seed!r} (now)")
    if diffs:
        raise TrainError(f"checkpoint {path} was made with another configuration; resuming would not "
                         "continue the same run:\n  " + "\n  ".join(diffs)
                         + "\nUse the same preset and flags as that run, or start a new --run-dir.")


def train(opts: TrainOptions) -> dict:
    """Run (or resume) a training job. Returns a summary dict (also written to summary.json)."""
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from vdm_ref.network import count_params, flops
    from vdm_ref.network import init as init_params

    from . import sharding as shd
    from . import step as S
    from ._sample import sample_videos

    config, tc, u = opts.config, opts.config.train, opts.config.unet
    run_dir = Path(opts.run_dir)
    total_steps = tc.train_steps

    # ---- checks, before any long work
    if opts.resume and opts.overwrite:
        raise TrainError("--resume and --overwrite contradict each other: --resume continues the run "
                         f"in {run_dir}, --overwrite deletes it")
    if opts.backend == "ref" and (opts.compute_dtype or opts.remat):
        raise TrainError("--bf16 and --remat apply to --backend fast; the reference runs float32 as written")
    if opts.backend not in S.BACKENDS:
        raise TrainError(f"--backend {opts.backend!r}: expected one of {S.BACKENDS}")
    if opts.fsdp > 1 and opts.backend == "ref":
        raise TrainError("--backend ref runs on one device: drop --fsdp (or use --backend fast)")
    try:
        mesh = shd.make_mesh(opts.data_parallel if opts.backend == "fast" else 1, opts.fsdp) \
            if opts.backend == "fast" else None
        if mesh is not None:
            shd.check_batch_size(tc.batch_size, mesh)
    except ValueError as e:
        raise TrainError(str(e)) from None
    per_device = tc.batch_size // (mesh.size if mesh is not None else 1)
    if not opts.skip_memory_check:
        check_memory(config, per_device_batch=per_device, fsdp=opts.fsdp, remat=opts.remat)
    ds = make_dataset(config, opts.data)
    is_main = jax.process_index() == 0  # multi-host: only process 0 writes (the run dir may be shared)
    start_step, state_arrays = 0, None
    if opts.resume:  # every process reads the checkpoint: resuming multi-host needs a shared run dir
        prepare_run_dir(run_dir, resume=True, overwrite=False)
        path = ckpt.latest_checkpoint(run_dir)
        try:
            state_arrays, meta = ckpt.load_checkpoint(path)
        except ckpt.CheckpointError as e:
            raise TrainError(str(e)) from None
        check_resume_compatible(meta, opts, path)
        ckpt.check_shapes(state_arrays["params"], _shapes(u), f"parameters of {path}")
        start_step = int(meta["step"])
        if start_step >= total_steps and opts.minutes is None:
            raise TrainError(f"--resume: {path} is at step {start_step}, already >= --steps {total_steps}; "
                             "raise --steps to train further")
    elif is_main:
        prepare_run_dir(run_dir, resume=False, overwrite=opts.overwrite)
    if is_main:
        (run_dir / "config.json").write_text(json.dumps(_meta(opts, start_step, {
            "options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("config", "recipe", "data")},
            "params": count_params(u)}), indent=1, default=str))

    # ---- state and step
    params = init_params(u, opts.seed) if state_arrays is None else None
    if opts.backend == "ref":
        state, step_fn, to_canonical = _reference_backend(config, opts.recipe, params, state_arrays, start_step)
        batcher = Batcher(ds, config, opts.seed)
        put_batch = lambda b: jax.tree.map(jnp.asarray, b)  # noqa: E731
    else:
        to_canonical = S.state_to_canonical
        if state_arrays is None:
            state = S.init_train_state(config, params, opts.recipe)
        else:
            state = S.state_from_canonical(config, opts.recipe, state_arrays, start_step)
        state_sh = shd.state_sharding(mesh, state)
        rows = slice(None)
        if jax.process_count() > 1:
            share = tc.batch_size // jax.process_count()
            rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
        batcher = Batcher(ds, config, opts.seed, rows)
        batch_sh = shd.batch_sharding(mesh, batcher(start_step))
        state = shd.place(state, state_sh)
        step_fn = S.make_train_step(config, opts.recipe, backend=opts.backend,
                                    state_sharding=state_sh, batch_sharding=batch_sh,
                                    compute_dtype=opts.compute_dtype, remat=opts.remat)
        put_batch = lambda b: shd.global_batch(b, batch_sh, tc.batch_size)  # noqa: E731

    metrics_path = run_dir / "metrics.jsonl"
    flops_per_example = 3 * flops(u, frames=u.frames + tc.image_frames)
    from vdm_fast.measure import matmul_peak_flops

    peak = matmul_peak_flops(512, 5)  # the same process, the same moment: the achieved fraction means something

    def save(step_state, step, extra=None):
        arrays = to_canonical(step_state)
        if is_main:
            return ckpt.save_checkpoint(run_dir, step, arrays, _meta(opts, step, extra),
                                        keep=opts.keep_checkpoints)
        return None

    def samples(step_state, step):
        if not is_main or opts.num_samples <= 0:
            return {}
        t0 = time.perf_counter()
        ema = jax.tree.map(lambda x: jnp.asarray(jax.device_get(x)), step_state["ema"])
        cond = None
        if u.conditioning == "class":
            cond = jnp.asarray(np.eye(u.num_classes, dtype=np.float32)[np.arange(opts.num_samples) % u.num_classes])
        elif u.conditioning == "text":
            captions = [_clip_caption(ds, i) for i in range(opts.num_samples)]
            cond = tuple(jnp.asarray(a) for a in batcher.captions(captions))
        videos = np.asarray(sample_videos(
            ema, jax.random.fold_in(jax.random.key(opts.seed + 7919), step), config=config,
            num=opts.num_samples, steps=opts.sample_steps, cond=cond))
        paths = write_samples(videos, run_dir / "samples", f"step_{step:08d}", mp4=opts.mp4)
        coherence = temporal_coherence(videos)
        info = {"step": step, "kind": "samples", "coherence": coherence, "sample_steps": opts.sample_steps,
                "seconds": time.perf_counter() - t0, **paths}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(info) + "\n")
        return info

    # ---- the loop
    prefetch = Prefetcher(batcher, start_step)
    t_start = time.perf_counter()
    deadline = None if opts.minutes is None else t_start + 60.0 * opts.minutes
    step = start_step
    window = {"loss": [], "grad_norm": [], "t0": time.perf_counter(), "step0": step}
    last_sample = {}
    compile_s = None
    bar = tqdm(total=total_steps, initial=start_step, disable=not (opts.progress and is_main),
               dynamic_ncols=True, smoothing=0.05, unit="step", file=sys.stderr)
    try:
        while step < total_steps and (deadline is None or time.perf_counter() < deadline):
            batch = put_batch(prefetch.get(step))
            key = S.step_key(opts.seed, step)
            t_step = time.perf_counter()
            new_state, m = step_fn(state, batch, key)
            loss = float(m["loss"])
            if compile_s is None:
                compile_s = time.perf_counter() - t_step
                window["t0"], window["step0"] = time.perf_counter(), step + 1
            state = new_state  # on a non-finite loss the step returned the state unchanged
            if not (math.isfinite(loss) and math.isfinite(float(m["grad_norm"]))):
                raise NonFiniteLossError(
                    f"non-finite loss {loss} (gradient norm {float(m['grad_norm'])}) at step {step}: "
                    f"training stopped. The update was not applied; the last good state (step {step}) "
                    f"is checkpointed in {run_dir / 'checkpoints'}. Lower --learning-rate, check the "
                    "data, or resume from an earlier checkpoint.")
            step += 1
            window["loss"].append(loss)
            window["grad_norm"].append(float(m["grad_norm"]))
            bar.update(1)
            if step % opts.log_every == 0 or step == total_steps:
                dt = time.perf_counter() - window["t0"]
                n = step - window["step0"]
                rate = n / dt if n > 0 and dt > 0 else float("nan")
                row = {"step": step, "loss": float(np.mean(window["loss"])),
                       "grad_norm": float(np.mean(window["grad_norm"])),
                       "learning_rate": float(m["learning_rate"]), "ema_decay": float(m["ema_decay"]),
                       "steps_per_s": rate, "examples_per_s": rate * tc.batch_size,
                       "flops_per_s": rate * tc.batch_size * flops_per_example,
                       "matmul_peak_flops": peak,
                       "fraction_of_matmul_peak": rate * tc.batch_size * flops_per_example / peak,
                       "elapsed_s": time.perf_counter() - t_start}
                if is_main:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                post = {"loss": f"{row['loss']:.4f}", "ex_s": f"{row['examples_per_s']:.1f}"}
                if deadline is not None:  # --minutes: the bar's ETA is for --steps, so show the time left
                    left = max(0.0, deadline - time.perf_counter())
                    post["stops_in"] = f"{int(left // 60)}:{int(left % 60):02d}"
                bar.set_postfix(post)
                window = {"loss": [], "grad_norm": [], "t0": time.perf_counter(), "step0": step}
            if step % opts.checkpoint_every == 0:
                save(state, step)
                if is_main:
                    plot_losses(metrics_path, run_dir / "loss.png")
            if opts.sample_every and step % opts.sample_every == 0 and step != total_steps:
                last_sample = samples(state, step)
    except NonFiniteLossError:
        save(state, step, {"stopped": "non-finite loss"})
        raise
    except KeyboardInterrupt:
        try:  # the interrupted step may have consumed (donated) the state; then the last checkpoint stands
            save(state, step, {"stopped": "interrupted"})
        except Exception:  # noqa: BLE001
            print(f"interrupted at step {step}; the newest checkpoint in {run_dir / 'checkpoints'} stands",
                  file=sys.stderr)
        raise
    finally:
        prefetch.close()
        bar.close()
    final = save(state, step) if step > start_step or not opts.resume else ckpt.latest_checkpoint(run_dir)
    if is_main and metrics_path.exists():
        plot_losses(metrics_path, run_dir / "loss.png")
    last_sample = samples(state, step) or last_sample
    peak = max(peak, matmul_peak_flops(512, 5))
    summary = {"step": step, "start_step": start_step, "seconds": time.perf_counter() - t_start,
               "matmul_peak_flops": peak, "load_average": os.getloadavg(),
               "compile_seconds": compile_s, "checkpoint": str(final) if final else None,
               "params": count_params(u), "samples": last_sample}
    if is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _reference_backend(config, recipe, params, arrays, start_step):
    """--backend ref: `vdm_ref.train.train_step` (jax.grad over the reference, the reference
    AdamW) under jax.jit, on the canonical state {"step", "params", "ema", "opt": {"mu", "nu",
    "count"}} that checkpoints hold. A non-finite step returns the previous state."""
    import jax
    import jax.numpy as jnp

    from vdm_ref import train as ref_train

    f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(np.asarray(x), jnp.float32), t)  # noqa: E731
    if arrays is None:
        state = ref_train.init_train_state(config, f32(params))
        state["opt"]["count"] = jnp.zeros((), jnp.int32)
    else:
        state = {"params": f32(arrays["params"]), "ema": f32(arrays["ema"]),
                 "opt": {"mu": f32(arrays["opt"]["mu"]), "nu": f32(arrays["opt"]["nu"]),
                         "count": jnp.asarray(arrays["opt"]["count"], jnp.int32)}}
    state["step"] = jnp.asarray(start_step, jnp.int32)
    jitted = jax.jit(lambda s, b, k: ref_train.train_step(s, b, config, recipe, k))

    def step_fn(s, b, k):
        new, metrics = jitted(s, b, k)
        ok = bool(jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"]))
        return (new if ok else s), metrics

    def to_canonical(s):
        to_np = lambda t: jax.tree.map(lambda x: np.asarray(jax.device_get(x)), t)  # noqa: E731
        return {"params": to_np(s["params"]), "ema": to_np(s["ema"]),
                "opt": {"mu": to_np(s["opt"]["mu"]), "nu": to_np(s["opt"]["nu"]),
                        "count": np.asarray(jax.device_get(s["opt"]["count"]), np.int32)}}

    return state, step_fn, to_canonical


def _shapes(unet: UNetConfig) -> dict:
    from vdm_ref.network import param_shapes

    return param_shapes(unet)
