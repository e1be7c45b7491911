"""CLI commands over a checkpoint: `sample`, `predict`, `extend`, `interpolate`, `upsample`, `cascade`.

Each is a dataclass (tyro turns the field docstrings into --help; the shared flags are in
`options.py`) whose `generate(model)` reads and checks its inputs, then samples with a progress
bar over blocks and network evaluations. `GenerateOptions.run` does the rest: every user error
(a bad flag, an unwritable --out, a missing or damaged checkpoint, a video shorter than the
conditioning, a resolution the model cannot take) is a one-line error before any sampling
starts, and the results are written as `outputs.py` says (OUT.mp4 or .gif, OUT.png, OUT.npz,
OUT_boundaries.png).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from vdm_fast.inputs import DEFAULT_BASE_CHECKPOINT, InputError, moving_mnist_settings, resolve_checkpoint

from .model import open_model
from .options import Conditioned, FromVideo, Generated


@dataclasses.dataclass
class Sample(Conditioned):
    """Sample videos: unconditional, or class-/text-conditional with classifier-free guidance (Eq. 6).

    Longer than one block (--length > the model's frames) extends block by block (see `extend`).
    Example: python cli.py sample --batch-size 4 --steps 64 --out samples/mnist
    """

    length: int | None = None
    """Frames per video (default: the model's block length)."""
    method: Literal["reconstruction", "replacement"] = "reconstruction"
    """Conditioning of later blocks when --length exceeds one block."""
    w_r: float | None = None
    """Reconstruction guidance weight w_r (Eq. 7) for later blocks."""
    context_frames: int | None = None
    """Frames of the video so far each later block conditions on (default: half a block)."""

    command: ClassVar[str] = "sample"
    MINIMUMS: ClassVar[dict] = {**Conditioned.MINIMUMS, "length": 1, "w_r": 0, "context_frames": 0}
    FINITE: ClassVar[tuple] = Conditioned.FINITE + ("w_r",)

    def generate(self, model) -> Generated:
        from .tasks import sample

        cond = self.condition(model)
        options = self.options(model, guidance_weight=self.guidance_weight, method=self.method, w_r=self.w_r)
        video, windows = sample(model, self.seed, batch_size=self.batch_size, length=self.length, cond=cond,
                                options=options, context_frames=self.context_frames, progress=self.progress,
                                return_windows=True)
        return Generated(video, windows)


@dataclasses.dataclass
class Predict(FromVideo):
    """Video prediction (Sec. 4.2): given the first frames of a video, generate the rest.

    Example (BAIR-style 1 -> 15): python cli.py predict --clip 0 --given-frames 1 --length 16
    """

    given_frames: int = 1
    """Frames of the input given to the model (1 as on BAIR, 5 as on Kinetics-600)."""
    length: int | None = None
    """Total frames of each output video (default: the model's block length)."""

    command: ClassVar[str] = "predict"
    MINIMUMS: ClassVar[dict] = {**FromVideo.MINIMUMS, "given_frames": 1, "length": 2}

    def generate(self, model) -> Generated:
        from .tasks import predict

        video = self.source(model, self.given_frames)
        cond = self.condition(model)
        out, windows = predict(model, self.seed, video, given_frames=self.given_frames, length=self.length,
                               cond=cond, options=self.conditional_options(model), progress=self.progress,
                               return_windows=True)
        return Generated(out, windows)


@dataclasses.dataclass
class Extend(FromVideo):
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

    command: ClassVar[str] = "extend"
    MINIMUMS: ClassVar[dict] = {**FromVideo.MINIMUMS, "length": 2, "initial_frames": 1, "digit_size": 1,
                                "jump_tolerance": 0}
    FINITE: ClassVar[tuple] = FromVideo.FINITE + ("jump_tolerance",)

    def generate(self, model) -> Generated:
        from .tasks import extend, sample

        cond = self.condition(model)
        options = self.conditional_options(model)
        c = model.frames // 2 if self.context_frames is None else self.context_frames
        if not 0 < c < model.frames:
            raise InputError(f"--context-frames {c}: expected 0 < context < the model's block of {model.frames} "
                             "frames")
        first_windows, video = [], None
        if self.video is not None or self.clip is not None:
            video = self.source(model, self.initial_frames or model.frames)
            if self.initial_frames is not None:
                if video.shape[1] < self.initial_frames:
                    raise InputError(f"the input video has {video.shape[1]} frames, fewer than --initial-frames "
                                     f"{self.initial_frames}")
                video = video[:, : self.initial_frames]
            if video.shape[1] < c:
                raise InputError(f"the input video has {video.shape[1]} frames: extension conditions on the last "
                                 f"{c} (--context-frames)")
            if self.length <= video.shape[1]:
                raise InputError(f"--length {self.length}: expected more than the input's {video.shape[1]} frames")
        if video is None:
            video, first_windows = sample(model, self.seed, batch_size=self.batch_size, cond=cond, options=options,
                                          progress=self.progress, return_windows=True)
        if self.length <= video.shape[1]:
            out, windows = video[:, : self.length], []
        else:
            out, windows = extend(model, self.seed + 1, video, self.length, context_frames=c, cond=cond,
                                  options=options, progress=self.progress, return_windows=True)
        windows = list(first_windows) + list(windows)
        return Generated(out, windows, self._coherence(model, out, windows) if self.coherence else None)

    def _coherence(self, model, video, windows):
        from vdm_ref.support.eval import boundary_coherence

        boundaries = [w.boundary for w in windows if w.boundary is not None]
        if not boundaries:
            raise InputError("--coherence: the output has no block boundary to measure")
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
class Interpolate(FromVideo):
    """Temporal upsampling (Sec. 3.1): fill in the frames between those of a low-frame-rate video.

    Example: python cli.py interpolate --clip 0 --factor 4   (every 4th frame of the clip is given)
    """

    factor: int = 4
    """Output frames per input frame interval: input frame i becomes output frame factor * i."""
    context_frames: int | None = None
    """Generated frames each later window also conditions on (default: a quarter block)."""
    subsample_clip: bool = True
    """With --clip: take every factor-th frame of the clip as the low-frame-rate input."""

    command: ClassVar[str] = "interpolate"
    MINIMUMS: ClassVar[dict] = {**FromVideo.MINIMUMS, "factor": 2, "context_frames": 0}

    def generate(self, model) -> Generated:
        from .tasks import interpolate

        video = self.source(model, model.frames)
        if self.clip is not None and self.subsample_clip:
            video = video[:, :: self.factor]
        cond = self.condition(model)
        out, windows = interpolate(model, self.seed, video, self.factor, context_frames=self.context_frames,
                                   cond=cond, options=self.conditional_options(model), progress=self.progress,
                                   return_windows=True)
        return Generated(out, windows)


@dataclasses.dataclass
class Upsample(FromVideo):
    """Spatial super-resolution by reconstruction guidance (Eq. 8) with an unconditional
    high-resolution model; with --frameskip > 1 also temporal (Fig. 2). The whole cascade, with
    the low-resolution video sampled by a base model, is the `cascade` command.

    Input: --video (a low-resolution video) or --clip (a dataset clip, area-downsampled by
    --factor). Example: python cli.py upsample --clip 0 --factor 2
    """

    factor: int = 2
    """Spatial factor: the model's frame size over the low-resolution one (for --clip)."""
    frameskip: int = 1
    """The low-resolution frames are every frameskip-th output frame (Fig. 2: 4)."""
    low_frames: int | None = None
    """Frames of the low-resolution video to use (default: all / one block)."""
    context_frames: int | None = None
    """High-resolution frames each later block conditions on (default: half a block)."""

    command: ClassVar[str] = "upsample"
    GRIDS: ClassVar[tuple] = ("low_res",)
    MINIMUMS: ClassVar[dict] = {**FromVideo.MINIMUMS, "factor": 1, "frameskip": 1, "low_frames": 1,
                                "context_frames": 0}

    def generate(self, model) -> Generated:
        from vdm_ref.guidance import downsample_area

        from .tasks import upsample

        if self.method != "reconstruction":
            raise InputError("upsample conditions on a low-resolution video by reconstruction guidance (Eq. 8): "
                             "--method replacement has nothing to replace")
        if (self.video is None) == (self.clip is None):
            raise InputError("give exactly one input: --video PATH (a low-resolution video) or --clip INDEX "
                             "(a clip of the model's Moving MNIST, downsampled by --factor); to sample the "
                             "low-resolution video with a base model, use the `cascade` command")
        cond = self.condition(model)
        options = self.conditional_options(model)
        if self.video is not None:
            low = self.source(model, 0, own_size=True)[:, : self.low_frames]
        else:
            if model.image_size % self.factor:
                raise InputError(f"--factor {self.factor} does not divide the model's frame size {model.image_size}")
            clip = self.source(model, (self.low_frames or model.frames) * self.frameskip)[:, :: self.frameskip]
            low = np.asarray(downsample_area(clip, self.factor))
        out, windows = upsample(model, self.seed + 1, low, frameskip=self.frameskip,
                                context_frames=self.context_frames, cond=cond, options=options,
                                progress=self.progress, return_windows=True)
        return Generated(out, windows, grids={"low_res": low})


@dataclasses.dataclass
class Cascade(Conditioned):
    """The Fig. 2 cascade (Sec. 4.3.3): a base model samples a low-resolution video at a low frame
    rate, then this model super-resolves it in space and fills it in time, conditioned on it by
    reconstruction guidance in space and time at once (Eq. 7 + 8).

    Writes the final video as --out and each stage beside it: OUT_base (the base model's video,
    pixel-repeated to the final size, each frame held until the next) and OUT_stages (base | final
    side by side), with OUT.json holding the time of each stage. With --caption (or --label) every
    conditional stage is conditioned on it (--guidance-weight for both).
    Example: python cli.py cascade --out samples/cascade.gif
    """

    base: str = DEFAULT_BASE_CHECKPOINT
    """The base (first-stage) model: lower resolution and frame rate than --checkpoint."""
    frameskip: int | None = None
    """Final frames per base frame (default: the base's frameskip over this model's)."""
    base_frames: int | None = None
    """Frames the base samples (default: its block; more are extended block by block)."""
    w_r: float | None = None
    """Reconstruction guidance weight w_r of Eq. 7 + 8 in the second stage (default: the config's, else 5)."""
    context_frames: int | None = None
    """Full-resolution frames each later second-stage block conditions on (default: half a block)."""

    command: ClassVar[str] = "cascade"
    STAGES: ClassVar[tuple] = ("base", "stages")
    MINIMUMS: ClassVar[dict] = {**Conditioned.MINIMUMS, "frameskip": 1, "base_frames": 1, "context_frames": 0,
                                "w_r": 0}
    FINITE: ClassVar[tuple] = Conditioned.FINITE + ("w_r",)
    DEFAULT_LABEL: ClassVar[str | None] = None  # the base's video says what the second stage draws

    def inputs(self) -> list[tuple[str, Path, bool]]:
        return super().inputs() + [("--base", resolve_checkpoint(self.base, "--base"), False)]

    def generate(self, model) -> Generated:
        from .tasks import cascade

        base = open_model(self.base, backend=self.backend, ema=self.ema, flag="--base")
        factor, skip = cascade_geometry(base, model, self.frameskip)
        cond_base, cond_high = self.stage_conditions(base, model)
        high_options = self.options(model, method="reconstruction", w_r=self.w_r,
                                    guidance_weight=self.guidance_weight)
        if high_options.effective_w_r == 0:
            raise InputError("--w-r 0: the second stage conditions on the base's video only through "
                             "reconstruction guidance (Eq. 8); give w_r > 0")
        r = cascade(base, model, self.seed, batch_size=self.batch_size, low_frames=self.base_frames,
                    frameskip=skip, low_cond=cond_base, high_cond=cond_high,
                    low_options=self.options(base, guidance_weight=self.guidance_weight),
                    high_options=high_options, context_frames=self.context_frames, progress=self.progress)
        held = held_video(r.low, factor, skip, r.high.shape[1])
        gap = np.ones(held.shape[:3] + (2, held.shape[4]), np.float32)
        extra = {"base_checkpoint": self.base, "factor": factor, "frameskip": skip, "w_r": high_options.effective_w_r,
                 "base_video": list(r.low.shape), "video": list(r.high.shape), "seconds": r.seconds}
        print(f"base: {r.low.shape[1]} frames {r.low.shape[2]}x{r.low.shape[3]} in {r.seconds['base']:.1f} s; "
              f"second stage (x{factor} in space, x{skip} in time): {r.high.shape[1]} frames "
              f"{r.high.shape[2]}x{r.high.shape[3]} in {r.seconds['second_stage']:.1f} s")
        return Generated(r.high, r.windows, extra=extra,
                         videos={"base": held, "stages": np.concatenate([held, gap, r.high], axis=3)})

    def stage_conditions(self, base, model) -> tuple:
        """(c of the base, c of the second stage): --label / --caption encoded for each stage
        conditioned that way, None (the null condition) for the others; InputError if no stage
        takes it."""
        if self.label is None and self.caption is None:
            return self.condition(base), self.condition(model)
        kinds = {base.unet.conditioning, model.unet.conditioning} - {"none"}
        given, takes = ("--label", "class") if self.label is not None else ("--caption", "text")
        if takes not in kinds:
            raise InputError(f"{given}: neither the base ({self.base}) nor --checkpoint ({self.checkpoint}) is "
                             + (f"{takes}-conditional" if kinds else "conditional"))
        return tuple(self.condition(m) if m.unet.conditioning == takes else None for m in (base, model))


def cascade_geometry(base, model, frameskip: int | None) -> tuple[int, int]:
    """(spatial factor k = H / h, frames of the final video per base frame) of a base model and
    a second-stage model; InputError when the base cannot feed the second stage."""
    if base.channels != model.channels:
        raise InputError(f"--base has {base.channels} channel(s), --checkpoint {model.channels}: the stages "
                         "must agree")
    if model.image_size % base.image_size:
        raise InputError(f"--base makes {base.image_size}x{base.image_size} frames, which do not divide the "
                         f"second stage's {model.image_size}x{model.image_size}")
    if frameskip is None:
        if base.unet.frameskip % model.unet.frameskip:
            raise InputError(f"--base was trained at frameskip {base.unet.frameskip}, not a multiple of the "
                             f"second stage's {model.unet.frameskip}: give --frameskip")
        frameskip = base.unet.frameskip // model.unet.frameskip
    if frameskip >= model.frames:
        raise InputError(f"--frameskip {frameskip}: expected < the second stage's block of {model.frames} frames")
    if model.image_size == base.image_size and frameskip == 1:
        raise InputError(f"--base makes {base.image_size}x{base.image_size} frames at the second stage's frame rate: "
                         "nothing to upsample; give a base of lower resolution or frame rate (or --frameskip > 1)")
    return model.image_size // base.image_size, int(frameskip)


def held_video(low: np.ndarray, factor: int, frameskip: int, length: int) -> np.ndarray:
    """The base's video [B, T, h, w, C] as the final video sees it: pixels repeated `factor`
    times per side, each frame held `frameskip` frames; [B, length, h·factor, w·factor, C]."""
    up = np.repeat(np.repeat(low, factor, axis=2), factor, axis=3)
    return np.repeat(up, frameskip, axis=1)[:, :length]


COMMANDS = {"sample": Sample, "predict": Predict, "extend": Extend, "interpolate": Interpolate, "upsample": Upsample,
            "cascade": Cascade}
