"""CLI commands over a checkpoint: `sample`, `predict`, `extend`, `interpolate`, `upsample`.

Each is a dataclass (tyro turns the field docstrings into --help) with a `run()` that loads the
model, reads and checks its inputs — every user error (missing checkpoint, a video shorter than
the conditioning, a resolution the model cannot take) is raised before any sampling starts —
generates with a progress bar over blocks and network evaluations, and writes

    OUT.mp4 (or .gif)   the videos side by side
    OUT.png             a frame grid: one row per video, one column per frame
    OUT_boundaries.png  the same with the gap before each block boundary in red (when there are any)
    OUT.npz             the videos as float32 [B, N, H, W, C] in [-1, 1] ("video"), plus the
                        block boundaries ("boundaries")
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np

#: The Moving MNIST checkpoint shipped with the repository (relative to the repository root).
DEFAULT_CHECKPOINT = "checkpoints/mnist-small"
_ROOT = Path(__file__).resolve().parents[2]


class UsageError(SystemExit):
    """Bad command-line input, found before any sampling: exits with the message (what and why),
    without a traceback."""


def resolve_checkpoint(path: str) -> Path:
    """The checkpoint path as given, or relative to the repository root; a clear error if absent."""
    p = Path(path)
    if p.exists():
        return p
    q = _ROOT / p
    if not p.is_absolute() and q.exists():
        return q
    raise UsageError(f"no checkpoint at {path!r}: expected a checkpoint directory (meta.json + arrays.npz) or "
                     f"a training run directory (with checkpoints/step_*); train one with `python cli.py train`"
                     + (f" (the default {DEFAULT_CHECKPOINT!r} ships with the repository: is this a full clone?)"
                        if path == DEFAULT_CHECKPOINT else ""))


@dataclasses.dataclass
class _Common:
    checkpoint: str = DEFAULT_CHECKPOINT
    """Checkpoint directory, or a training run directory (its newest checkpoint is used)."""
    backend: Literal["fast", "ref"] = "fast"
    """'fast': Equinox U-Net and compiled sampler loops; 'ref': vdm_ref network and Python loops."""
    out: str = ""
    """Output path without suffix (default: samples/<command>)."""
    format: Literal["mp4", "gif"] = "mp4"
    """Video file format (a PNG frame grid and an .npz are always written too)."""
    fps: float = 8.0
    """Frames per second of the written video."""
    seed: int = 0
    """Random seed: the same seed, inputs and options give the same videos."""
    batch_size: int = 4
    """Videos generated at once."""
    steps: int | None = None
    """Sampling steps (default: the model config's sampling_steps)."""
    gamma: float | None = None
    """γ of the ancestral sampler, Eq. 4 (default: the model config's)."""
    corrector: bool | None = None
    """Predictor-corrector: a Langevin step (Eq. 5) after each ancestral step (default: config's)."""
    clip_x: bool = True
    """Clip x̂ to [-1, 1] at every step (static thresholding; straight-through for guidance)."""
    ema: bool = True
    """Use the EMA parameters when the checkpoint has them."""
    progress: bool = True
    """Show progress bars (blocks and network evaluations)."""

    command = "generate"

    # -- helpers ---------------------------------------------------------------------------------

    def _check_common(self):
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: expected >= 1")
        if not self.fps > 0:
            raise UsageError(f"--fps {self.fps}: expected > 0")

    def _model(self):
        from .model import load_model

        self._check_common()
        path = resolve_checkpoint(self.checkpoint)
        try:
            return load_model(path, backend=self.backend, ema=self.ema)
        except FileNotFoundError as e:
            raise UsageError(str(e)) from e

    def _options(self, model, **extra):
        from .engine import SamplerOptions

        try:
            return SamplerOptions.from_config(model.config.diffusion, steps=self.steps, gamma=self.gamma,
                                              corrector=self.corrector, clip_x=self.clip_x, **extra)
        except ValueError as e:
            raise UsageError(str(e)) from e

    def _out(self) -> Path:
        return Path(self.out or f"samples/{self.command}")

    def _write(self, video: np.ndarray, windows=(), extra: dict | None = None) -> Path:
        from vdm_ref.support.data import write_frame_grid, write_video

        stem = self._out()
        stem.parent.mkdir(parents=True, exist_ok=True)
        boundaries = [w.boundary for w in windows if w.boundary is not None]
        write_video(stem.with_suffix(f".{self.format}"), tile_videos(video), fps=self.fps)
        write_frame_grid(stem.with_suffix(".png"), video)
        if boundaries:
            from PIL import Image

            Image.fromarray(boundary_strip(video, boundaries)).save(stem.parent / (stem.name + "_boundaries.png"))
        np.savez_compressed(stem.with_suffix(".npz"), video=video.astype(np.float32),
                            boundaries=np.asarray(boundaries, np.int64))
        print(f"wrote {stem.with_suffix('.' + self.format)}, {stem.with_suffix('.png')}, {stem.with_suffix('.npz')}: "
              f"{video.shape[0]} videos of {video.shape[1]} frames {video.shape[2]}x{video.shape[3]}"
              + (f"; block boundaries at frames {boundaries}" if boundaries else ""))
        if extra:
            stem.with_suffix(".json").write_text(json.dumps(extra, indent=1, sort_keys=True))
        return stem


def boundary_strip(video: np.ndarray, boundaries, padding: int = 2) -> np.ndarray:
    """The frame grid of `video` [B, T, H, W, C] as RGB uint8, with the gap before each block
    boundary's first generated frame coloured red (Fig. 4-style strips)."""
    from vdm_ref.support.data import frame_grid
    from vdm_ref.support.data.video_io import as_rgb

    grid = as_rgb(frame_grid(video, padding=padding)).copy()
    w = video.shape[3]
    for b in boundaries:
        x = b * (w + padding)
        grid[:, x : x + padding] = (220, 30, 30)
    return grid


def tile_videos(video: np.ndarray, padding: int = 2) -> np.ndarray:
    """[B, T, H, W, C] -> [T, H, B (W + p) − p, C]: the videos side by side (white gaps)."""
    b, t, h, w, c = video.shape
    out = np.ones((t, h, b * (w + padding) - padding, c), np.float32)
    for i in range(b):
        out[:, :, i * (w + padding) : i * (w + padding) + w] = video[i]
    return out


def load_input_video(path: str, model, *, batch_size: int, resize: bool = False,
                     max_frames: int | None = None) -> np.ndarray:
    """A video file (MP4/GIF/... or a folder of frames) as [batch_size, T, H, W, C] in [-1, 1],
    converted to the model's channels; its size must be the model's unless `resize`."""
    from vdm_ref.support.data import VideoReadError, from_uint8, read_video, resize_center_crop

    p = Path(path)
    if not p.exists():
        raise UsageError(f"no video at {path!r}")
    try:
        frames = read_video(p, max_frames=max_frames)
    except VideoReadError as e:
        raise UsageError(str(e)) from e
    t, h, w, _ = frames.shape
    size = model.image_size
    if (h, w) != (size, size) and not resize:
        raise UsageError(f"{path} is {h}x{w}: the model takes {size}x{size} frames; pass --resize to centre-crop "
                         f"and resize it")
    frames = np.stack([resize_center_crop(f, size, model.channels) for f in frames])
    video = from_uint8(frames)[None]
    return np.repeat(video, batch_size, axis=0)


def moving_mnist_settings(model) -> dict:
    """The Moving MNIST settings of the model's training data, from the checkpoint's "data" record
    (`python cli.py train` writes mnist_digits, mnist_digit_size, mnist_speed; generic keys such as
    digit_size are read too), with defaults for what it does not record."""
    data = dict(model.meta.get("data", {}) or {})
    out = {"resolution": model.image_size, "frameskip": model.unet.frameskip}
    for key, name in (("mnist_digits", "num_digits"), ("num_digits", "num_digits"),
                      ("mnist_digit_size", "digit_size"), ("digit_size", "digit_size"),
                      ("mnist_speed", "speed"), ("speed", "speed"), ("motion", "motion")):
        if data.get(key) is not None:
            out[name] = tuple(data[key]) if isinstance(data[key], list) else data[key]
    out.setdefault("digit_size", digit_size_default(model.image_size))
    out["digit_size"] = min(int(out["digit_size"]), model.image_size)
    return out


def dataset_clips(model, indices, *, num_frames: int) -> np.ndarray:
    """Clips of the Moving MNIST data the model was trained on (settings from the checkpoint,
    `moving_mnist_settings`), drawn from the MNIST test digits with a seed of their own, so they
    are not training clips. [len(indices), num_frames, H, W, C]."""
    from vdm_ref.support.data import MovingMNIST

    kind = (model.meta.get("data", {}) or {}).get("dataset", model.config.dataset)
    if (model.meta.get("data") or {}).get("data_dir"):
        kind = "folder"
    if kind not in ("moving_mnist", "", None):
        raise UsageError(f"--clip reads Moving MNIST clips, but the model was trained on {kind!r}: pass --video")
    ds = MovingMNIST(max(indices) + 1, num_frames=num_frames, split="test", seed=1234, **moving_mnist_settings(model))
    return ds.batch(np.asarray(indices))


def digit_size_default(resolution: int) -> int:
    """Moving MNIST digit size for a frame size when the checkpoint does not record it: 28 at 64."""
    return max(4, round(resolution * 28 / 64))


def _source(self, model, num_frames: int) -> np.ndarray:
    """The input video of a command: --video file or --clip dataset index (one of them)."""
    if (self.video is None) == (self.clip is None):
        raise UsageError("give exactly one input: --video PATH (a video file or frame folder) or --clip INDEX "
                         "(a clip of the model's Moving MNIST dataset)")
    if self.video is not None:
        return load_input_video(self.video, model, batch_size=self.batch_size, resize=self.resize)
    if self.clip < 0:
        raise UsageError(f"--clip {self.clip}: expected an index >= 0")
    return np.repeat(dataset_clips(model, [self.clip], num_frames=num_frames), self.batch_size, axis=0)


def _condition(self, model):
    """The class / text condition from --label / --caption, checked against the model."""
    from .engine import one_hot

    kind = model.unet.conditioning
    label, caption = getattr(self, "label", None), getattr(self, "caption", None)
    if label is not None and caption is not None:
        raise UsageError("give --label or --caption, not both")
    if label is None and caption is None:
        if kind != "none" and getattr(self, "guidance_weight", 0):
            raise UsageError(f"--guidance-weight needs a condition: the model is {kind}-conditional; pass "
                             + ("--label" if kind == "class" else "--caption"))
        return None
    if kind == "none":
        raise UsageError("the model is unconditional: --label/--caption cannot condition it")
    if label is not None:
        if kind != "class":
            raise UsageError(f"the model is {kind}-conditional: pass --caption, not --label")
        try:
            return one_hot([label] * self.batch_size, model.unet.num_classes)
        except ValueError as e:
            raise UsageError(f"--label {label}: {e}") from e
    if kind != "text":
        raise UsageError(f"the model is {kind}-conditional: pass --label, not --caption")
    from vdm_ref.text_encoder import embed_captions_cached

    tokens, mask = embed_captions_cached([caption] * self.batch_size)
    return (np.asarray(tokens, np.float32), np.asarray(mask, bool))


def _report(model, t0):
    from .model import describe

    print(f"{describe(model)}; {time.perf_counter() - t0:.1f} s")


@dataclasses.dataclass
class Sample(_Common):
    """Sample videos: unconditional, or class-/text-conditional with classifier-free guidance (Eq. 6).

    Longer than one block (--length > the model's frames) extends block by block (see `extend`).
    Example: python cli.py sample --batch-size 4 --steps 64 --out samples/mnist
    """

    length: int | None = None
    """Frames per video (default: the model's block length)."""
    label: int | None = None
    """Class to condition on (class-conditional models)."""
    caption: str | None = None
    """Caption to condition on (text-conditional models)."""
    guidance_weight: float | None = None
    """Classifier-free guidance weight w (Eq. 6; default: the config's)."""
    method: Literal["reconstruction", "replacement"] = "reconstruction"
    """Conditioning of later blocks when --length exceeds one block."""
    w_r: float | None = None
    """Reconstruction guidance weight w_r (Eq. 7) for later blocks."""
    context_frames: int | None = None
    """Frames of the video so far each later block conditions on (default: half a block)."""

    command = "sample"

    def run(self):
        from .tasks import sample

        t0 = time.perf_counter()
        model = self._model()
        cond = _condition(self, model)
        options = self._options(model, guidance_weight=self.guidance_weight, method=self.method, w_r=self.w_r)
        if self.length is not None and self.length < 1:
            raise UsageError(f"--length {self.length}: expected >= 1")
        try:
            video, windows = sample(model, self.seed, batch_size=self.batch_size, length=self.length, cond=cond,
                                    options=options, context_frames=self.context_frames, progress=self.progress,
                                    return_windows=True)
        except ValueError as e:
            raise UsageError(str(e)) from e
        _report(model, t0)
        return self._write(video, windows)


@dataclasses.dataclass
class _Conditional(_Common):
    video: str | None = None
    """Input video: a file (MP4, GIF, ...) or a folder of frames."""
    clip: int | None = None
    """Instead of --video: this clip of the model's Moving MNIST dataset (test split)."""
    resize: bool = False
    """Centre-crop and resize an input video whose size is not the model's."""
    method: Literal["reconstruction", "replacement"] = "reconstruction"
    """Conditioning method (Sec. 3.1): reconstruction guidance (Eq. 7) or plain replacement."""
    w_r: float | None = None
    """Reconstruction guidance weight w_r (default: the config's, else 5)."""
    replacement: Literal["marginal", "posterior"] = "marginal"
    """Replacement variant: z^a_s ~ q(z_s | x^a) or q(z_s | x^a, z^a_t)."""
    label: int | None = None
    """Class to condition on (class-conditional models)."""
    caption: str | None = None
    """Caption to condition on (text-conditional models)."""
    guidance_weight: float | None = None
    """Classifier-free guidance weight w (Eq. 6)."""

    def _cond_options(self, model):
        return self._options(model, method=self.method, w_r=self.w_r, replacement=self.replacement,
                             guidance_weight=self.guidance_weight)


@dataclasses.dataclass
class Predict(_Conditional):
    """Video prediction (Sec. 4.2): given the first frames of a video, generate the rest.

    Example (BAIR-style 1 -> 15): python cli.py predict --clip 0 --given-frames 1 --length 16
    """

    given_frames: int = 1
    """Frames of the input given to the model (1 as on BAIR, 5 as on Kinetics-600)."""
    length: int | None = None
    """Total frames of each output video (default: the model's block length)."""

    command = "predict"

    def run(self):
        from .tasks import predict

        t0 = time.perf_counter()
        model = self._model()
        if self.given_frames < 1:
            raise UsageError(f"--given-frames {self.given_frames}: expected >= 1")
        video = _source(self, model, max(self.given_frames, 1))
        cond = _condition(self, model)
        options = self._cond_options(model)
        try:
            out, windows = predict(model, self.seed, video, given_frames=self.given_frames, length=self.length,
                                   cond=cond, options=options, progress=self.progress, return_windows=True)
        except ValueError as e:
            raise UsageError(str(e)) from e
        _report(model, t0)
        return self._write(out, windows)


@dataclasses.dataclass
class Extend(_Conditional):
    """Autoregressive extension (Sec. 4.3.3): grow videos to any length, block by block, each block
    conditioned on the last frames so far by reconstruction guidance or replacement.

    Without --video/--clip, first samples one block. --coherence prints the boundary coherence of
    the result (Moving MNIST models; docs/generation.md).
    Example: python cli.py extend --length 64 --method reconstruction --coherence
    """

    length: int = 64
    """Frames of each output video."""
    context_frames: int | None = None
    """Frames of the video so far each new block conditions on (default: half a block)."""
    initial_frames: int | None = None
    """Frames of the input video to keep and extend (default: all of --video; one block of --clip)."""
    coherence: bool = False
    """Measure the boundary coherence (digit identities and positions across block boundaries)."""
    digit_size: int | None = None
    """Digit size in pixels for --coherence (default: the checkpoint's data settings, else 28 * H / 64)."""
    jump_tolerance: float | None = None
    """τ of --coherence in pixels (default: 2 x the median within-block step + 1)."""

    command = "extend"

    def run(self):
        from .tasks import extend, sample

        t0 = time.perf_counter()
        model = self._model()
        if self.initial_frames is not None and self.initial_frames < 1:
            raise UsageError(f"--initial-frames {self.initial_frames}: expected >= 1")
        cond = _condition(self, model)
        options = self._cond_options(model)
        c = model.frames // 2 if self.context_frames is None else self.context_frames
        if not 0 < c < model.frames:
            raise UsageError(f"--context-frames {c}: expected 0 < context < the model's block of {model.frames} frames")
        if self.video is None and self.clip is None:
            first_windows = []
            video = None
        else:
            video = _source(self, model, self.initial_frames or model.frames)
            if self.initial_frames is not None:
                if video.shape[1] < self.initial_frames:
                    raise UsageError(f"the input video has {video.shape[1]} frames, fewer than --initial-frames "
                                     f"{self.initial_frames}")
                video = video[:, : self.initial_frames]
            if video.shape[1] < c:
                raise UsageError(f"the input video has {video.shape[1]} frames: extension conditions on the last "
                                 f"{c} (--context-frames)")
            if self.length <= video.shape[1]:
                raise UsageError(f"--length {self.length}: expected more than the input's {video.shape[1]} frames")
        if self.length < 2:
            raise UsageError(f"--length {self.length}: expected >= 2")
        try:
            if video is None:
                video, first_windows = sample(model, self.seed, batch_size=self.batch_size, cond=cond,
                                              options=options, progress=self.progress, return_windows=True)
            if self.length <= video.shape[1]:
                out, windows = video[:, : self.length], []
            else:
                out, windows = extend(model, self.seed + 1, video, self.length, context_frames=c, cond=cond,
                                      options=options, progress=self.progress, return_windows=True)
        except ValueError as e:
            raise UsageError(str(e)) from e
        _report(model, t0)
        extra = None
        if self.coherence:
            extra = self._coherence(model, out, windows)
        return self._write(out, list(first_windows) + list(windows), extra)

    def _coherence(self, model, video, windows):
        from vdm_ref.support.eval import boundary_coherence

        boundaries = [w.boundary for w in windows if w.boundary is not None]
        if not boundaries:
            raise UsageError("--coherence: the output has no block boundary to measure")
        size = self.digit_size or moving_mnist_settings(model)["digit_size"]
        report = boundary_coherence(video, boundaries, int(size), jump_tolerance=self.jump_tolerance)
        print(f"boundary coherence {report.boundary:.3f} ± {report.boundary_se:.3f} (within blocks {report.within:.3f} "
              f"± {report.within_se:.3f}); identity agreement "
              f"{report.identity_boundary:.3f} / {report.identity_within:.3f}; median jump "
              f"{report.median_jump_boundary:.2f} px / {report.median_jump_within:.2f} px, within τ = {report.jump_tolerance:.2f} px "
              f"{report.position_boundary:.3f} / {report.position_within:.3f}; "
              f"{report.pairs_boundary} boundary pairs, empty frames {report.empty_frames:.3f}, single-digit detections "
              f"{report.single_digits:.3f}")
        return {"coherence": report.as_dict(), "method": self.method, "w_r": self.w_r, "digit_size": int(size)}


@dataclasses.dataclass
class Interpolate(_Conditional):
    """Temporal upsampling (Sec. 3.1): fill in the frames between those of a low-frame-rate video.

    Example: python cli.py interpolate --clip 0 --factor 4   (every 4th frame of the clip is given)
    """

    factor: int = 4
    """Output frames per input frame interval: input frame i becomes output frame factor * i."""
    context_frames: int | None = None
    """Generated frames each later window also conditions on (default: a quarter block)."""
    subsample_clip: bool = True
    """With --clip: take every factor-th frame of the clip as the low-frame-rate input."""

    command = "interpolate"

    def run(self):
        from .tasks import interpolate

        t0 = time.perf_counter()
        model = self._model()
        if self.factor < 2:
            raise UsageError(f"--factor {self.factor}: expected >= 2")
        if self.clip is not None and self.video is None and self.subsample_clip:
            video = _source(self, model, model.frames)[:, :: self.factor]
        else:
            video = _source(self, model, model.frames)
        cond = _condition(self, model)
        options = self._cond_options(model)
        try:
            out, windows = interpolate(model, self.seed, video, self.factor, context_frames=self.context_frames,
                                       cond=cond, options=options, progress=self.progress, return_windows=True)
        except ValueError as e:
            raise UsageError(str(e)) from e
        _report(model, t0)
        return self._write(out, windows)


@dataclasses.dataclass
class Upsample(_Conditional):
    """Spatial super-resolution by reconstruction guidance (Eq. 8) with an unconditional
    high-resolution model; with --frameskip > 1 also temporal, and with --low-checkpoint the
    whole Fig. 2 cascade (sample low-res at frameskip k with one model, upsample and fill in
    time with this one).

    Input: --video (a low-resolution video), --clip (a dataset clip, area-downsampled by
    --factor), or --low-checkpoint. Example: python cli.py upsample --clip 0 --factor 2
    """

    factor: int = 2
    """Spatial factor: the model's frame size over the low-resolution one (for --clip)."""
    frameskip: int = 1
    """The low-resolution frames are every frameskip-th output frame (Fig. 2: 4)."""
    low_checkpoint: str | None = None
    """Fig. 2 cascade: sample the low-resolution video with this model first."""
    low_frames: int | None = None
    """Frames of the low-resolution video to use (default: all / one block)."""
    context_frames: int | None = None
    """High-resolution frames each later block conditions on (default: half a block)."""

    command = "upsample"

    def run(self):
        from vdm_ref.guidance import downsample_area

        from .model import load_model
        from .tasks import sample, upsample

        t0 = time.perf_counter()
        model = self._model()
        if self.method != "reconstruction":
            raise UsageError("upsample conditions on a low-resolution video by reconstruction guidance (Eq. 8): "
                             "--method replacement has nothing to replace")
        if self.factor < 1 or self.frameskip < 1:
            raise UsageError(f"--factor {self.factor}, --frameskip {self.frameskip}: expected >= 1")
        cond = _condition(self, model)
        options = self._cond_options(model)
        low_model = None
        if self.low_checkpoint is not None:
            if self.video is not None or self.clip is not None:
                raise UsageError("give one input: --low-checkpoint, --video or --clip")
            low_model = load_model(resolve_checkpoint(self.low_checkpoint), backend=self.backend, ema=self.ema)
        elif self.video is not None:
            if self.clip is not None:
                raise UsageError("give exactly one input: --video PATH or --clip INDEX")
            from vdm_ref.support.data import VideoReadError, from_uint8, read_video, resize_center_crop

            if not Path(self.video).exists():
                raise UsageError(f"no video at {self.video!r}")
            try:
                frames = read_video(self.video)
            except VideoReadError as e:
                raise UsageError(str(e)) from e
            side = min(frames.shape[1:3])
            frames = np.stack([resize_center_crop(f, side, model.channels) for f in frames])
            low = np.repeat(from_uint8(frames)[None], self.batch_size, axis=0)
        elif self.clip is not None:
            n = (self.low_frames or model.frames) if self.frameskip == 1 else (self.low_frames or model.frames) * self.frameskip
            if model.image_size % self.factor:
                raise UsageError(f"--factor {self.factor} does not divide the model's frame size {model.image_size}")
            clip = dataset_clips(model, [self.clip], num_frames=n)[:, :: self.frameskip]
            low = np.repeat(np.asarray(downsample_area(clip, self.factor)), self.batch_size, axis=0)
        else:
            raise UsageError("give an input: --video PATH (low resolution), --clip INDEX, or --low-checkpoint")
        try:
            if low_model is not None:
                low = sample(low_model, self.seed, batch_size=self.batch_size, length=self.low_frames,
                             options=None, progress=self.progress)
            elif self.low_frames is not None:
                low = low[:, : self.low_frames]
            out, windows = upsample(model, self.seed + 1, low, frameskip=self.frameskip,
                                    context_frames=self.context_frames, cond=cond, options=options,
                                    progress=self.progress, return_windows=True)
        except ValueError as e:
            raise UsageError(str(e)) from e
        _report(model, t0)
        stem = self._write(out, windows)
        from vdm_ref.support.data import write_frame_grid

        write_frame_grid(stem.parent / (stem.name + "_low_res.png"), low)
        return stem


COMMANDS = {"sample": Sample, "predict": Predict, "extend": Extend, "interpolate": Interpolate, "upsample": Upsample}
