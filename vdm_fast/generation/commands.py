"""CLI commands over a checkpoint: `sample`, `predict`, `extend`, `interpolate`, `upsample`.

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
from typing import ClassVar, Literal

import numpy as np

from vdm_fast.inputs import InputError, moving_mnist_settings

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

    command: ClassVar[str] = "upsample"
    MINIMUMS: ClassVar[dict] = {**FromVideo.MINIMUMS, "factor": 1, "frameskip": 1, "low_frames": 1,
                                "context_frames": 0}

    def generate(self, model) -> Generated:
        from vdm_ref.guidance import downsample_area

        from .tasks import sample, upsample

        if self.method != "reconstruction":
            raise InputError("upsample conditions on a low-resolution video by reconstruction guidance (Eq. 8): "
                             "--method replacement has nothing to replace")
        given = [f for f, v in (("--low-checkpoint", self.low_checkpoint), ("--video", self.video),
                                ("--clip", self.clip)) if v is not None]
        if len(given) != 1:
            raise InputError("give exactly one input: --video PATH (low resolution), --clip INDEX or "
                             "--low-checkpoint PATH" + (f", not {' and '.join(given)}" if given else ""))
        cond = self.condition(model)
        options = self.conditional_options(model)
        if self.low_checkpoint is not None:
            low_model = open_model(self.low_checkpoint, backend=self.backend, ema=self.ema, flag="--low-checkpoint")
            low = sample(low_model, self.seed, batch_size=self.batch_size, length=self.low_frames, options=None,
                         progress=self.progress)
        elif self.video is not None:
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


COMMANDS = {"sample": Sample, "predict": Predict, "extend": Extend, "interpolate": Interpolate, "upsample": Upsample}
