"""The flags every generation command shares, and the one `run()` they all go through.

- `GenerateOptions`: checkpoint, backend, output, sampler settings; `run()` checks every flag
  and the output path, loads the model, calls the command's `generate(model)` and writes the
  files (`outputs.py`). Every user error is a one-line `UsageError` before any sampling starts
  (a bad flag, an unwritable --out, a missing or damaged checkpoint, a video the model cannot
  take); errors of the sampling call itself (ValueError) become one too.
- `Conditioned`: --label / --caption / --guidance-weight, encoded by `vdm_fast.inputs`.
- `FromVideo`: the input video of predict / extend / interpolate / upsample (--video or --clip).
"""

from __future__ import annotations

import abc
import dataclasses
import sys
import time
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import numpy as np

from vdm_fast.inputs import (
    DEFAULT_CHECKPOINT,
    ConditionEncoder,
    TEXT_CHECKPOINT,
    InputError,
    check_flags,
    check_writable,
    dataset_clips,
    each_class,
    first_free,
    load_input_video,
    resolve_checkpoint,
    unfamiliar_caption,
    usage_errors,
)

from .model import open_model
from .outputs import VIDEO_FORMATS, beside, output_paths, tile_videos, write_outputs


class Generated(NamedTuple):
    """What a command's `generate` returns: the videos, the sampling windows (block boundaries),
    extra JSON results, extra frame grids to write as STEM_<name>.png, and extra videos (e.g. a
    cascade's stages) to write as STEM_<name>.<format> with their frame grid STEM_<name>.png."""

    video: np.ndarray
    windows: tuple = ()
    extra: dict | None = None
    grids: dict | None = None
    videos: dict | None = None


@dataclasses.dataclass
class GenerateOptions(abc.ABC):
    checkpoint: str = DEFAULT_CHECKPOINT
    """Checkpoint directory, or a training run directory (its newest checkpoint is used)."""
    backend: Literal["fast", "ref"] = "fast"
    """'fast': Equinox U-Net and compiled sampler loops; 'ref': vdm_ref network and Python loops."""
    out: str = ""
    """Output path (default: samples/<command>, or samples/<command>-2, -3, ... where earlier samples
    are: a default never replaces a file); its suffix .mp4 or .gif sets the video format."""
    format: Literal["mp4", "gif"] | None = None
    """Video file format (default: the suffix of --out, else mp4); a PNG frame grid and an .npz are
    always written too."""
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
    delta: float | None = None
    """Step size δ of the Langevin correction, Eq. 5 (default: the config's; the paper's 0.1)."""
    clip_x: bool = True
    """Clip x̂ to [-1, 1] at every step (static thresholding; straight-through for guidance)."""
    ema: bool = True
    """Use the EMA parameters when the checkpoint has them."""
    progress: bool = True
    """Show progress bars (blocks and network evaluations)."""

    command: ClassVar[str] = "generate"
    #: Names of the extra videos `generate` returns (written as STEM_<name>.<format> and .png).
    STAGES: ClassVar[tuple] = ()
    #: Names of the extra frame grids `generate` returns (written as STEM_<name>.png).
    GRIDS: ClassVar[tuple] = ()
    #: Least value of integer flags (None values are not checked).
    MINIMUMS: ClassVar[dict] = {"batch_size": 1, "steps": 2}
    #: Float flags that must be finite numbers.
    FINITE: ClassVar[tuple] = ("fps", "gamma", "delta")

    @abc.abstractmethod
    def generate(self, model) -> Generated:
        """The command's work on a loaded model, its inputs checked before any sampling."""

    def run(self) -> Path:
        """Check everything, load the model, generate, write; returns the output stem."""
        t0 = time.perf_counter()
        with usage_errors():
            stem, fmt = self.output()
            check_flags(dataclasses.asdict(self), minimums=self.MINIMUMS, positive=("fps", "delta"), finite=self.FINITE,
                        unit_interval=("gamma",))
            model = open_model(self.checkpoint, backend=self.backend, ema=self.ema)
        with usage_errors(ValueError):
            result = self.generate(model)
        from .model import describe

        print(f"{describe(model)}; {time.perf_counter() - t0:.1f} s")
        recorded = self.record(model)
        if recorded:
            result = result._replace(extra=dict(result.extra or {}, **recorded))
        with usage_errors(OSError, prefix=f"--out {self.out or stem}: cannot write: "):
            self.write(stem, fmt, result)
        return stem

    # -- helpers ---------------------------------------------------------------------------------

    def record(self, model) -> dict:
        """What OUT.json records of the inputs beside the command's own results (none here)."""
        return {}

    def output(self) -> tuple[Path, str]:
        """(stem, video format) of --out / --format, every file it names checked writable."""
        out = Path(self.out or f"samples/{self.command}")
        suffix = out.suffix.lower()
        if suffix:
            fmt = suffix[1:]
            if fmt not in VIDEO_FORMATS:
                raise InputError(f"--out {self.out}: unknown suffix {out.suffix!r}; expected "
                                 + " or ".join(f".{f}" for f in VIDEO_FORMATS)
                                 + ", or no suffix (then --format decides, default mp4)")
            if self.format is not None and self.format != fmt:
                raise InputError(f"--out {self.out} asks for {fmt} but --format {self.format}: give one of them")
            stem = out.with_suffix("")
        else:
            stem, fmt = out, self.format or "mp4"
        if not self.out:  # the default path: earlier samples stay (samples/sample-2, ...)
            stem = first_free(stem, lambda s: self.paths(s, fmt))
        inputs = self.inputs()
        for path in self.paths(stem, fmt):
            check_writable(path, "--out")
            for flag, given, closed in inputs:
                inside = given.is_dir() and path.parent.resolve() == given.resolve()
                if path.exists() and path.samefile(given):
                    clash = f"over the input {flag} {given}"
                elif path.exists() and inside:
                    clash = f"over {path.name} of the input {flag} {given}"
                elif inside and closed:
                    clash = f"{path.name} into the input folder {flag} {given}"
                else:
                    continue
                raise InputError(f"--out {self.out or stem}: would write {clash}; choose another --out")
        return stem, fmt

    def inputs(self) -> list[tuple[str, Path, bool]]:
        """(flag, path, closed) of the inputs the outputs must never replace; `closed`: a folder that
        takes every file in it (a frame folder), so nothing may be added to it either."""
        return [("--checkpoint", resolve_checkpoint(self.checkpoint), False)]

    def paths(self, stem: Path, fmt: str) -> list[Path]:
        """Every file the command may write for `stem`."""
        return output_paths(stem, fmt) + [beside(stem, f"_{name}{ext}") for name in self.STAGES
                                          for ext in (f".{fmt}", ".png")] + [
            beside(stem, f"_{name}.png") for name in self.GRIDS]

    def options(self, model, **extra):
        """The `SamplerOptions`: the model config's, overridden by the flags given."""
        from .engine import SamplerOptions

        return SamplerOptions.from_config(model.config.diffusion, steps=self.steps, gamma=self.gamma,
                                          corrector=self.corrector, delta=self.delta, clip_x=self.clip_x,
                                          **extra)

    def write(self, stem: Path, fmt: str, result: Generated) -> None:
        from vdm_ref.support.data import write_frame_grid, write_video

        video = result.video
        boundaries = [w.boundary for w in result.windows if w.boundary is not None]
        write_outputs(stem, fmt, video, fps=self.fps, boundaries=boundaries, extra=result.extra)
        for name, grid in (result.grids or {}).items():
            write_frame_grid(beside(stem, f"_{name}.png"), grid)
        for name, extra_video in (result.videos or {}).items():
            write_video(beside(stem, f"_{name}.{fmt}"), tile_videos(extra_video), fps=self.fps)
            write_frame_grid(beside(stem, f"_{name}.png"), extra_video)
        print(f"wrote {beside(stem, '.' + fmt)}, {beside(stem, '.png')}, {beside(stem, '.npz')}: "
              f"{video.shape[0]} videos of {video.shape[1]} frames {video.shape[2]}x{video.shape[3]}"
              + (f"; block boundaries at frames {boundaries}" if boundaries else ""))


@dataclasses.dataclass
class Conditioned(GenerateOptions):
    label: int | Literal["each", "null"] | None = None
    """Class to condition on (class-conditional models); 'each': video i gets class i mod the
    number of classes (0, 1, ..., 9, 0, ... on Moving MNIST; what `sample` gives a
    class-conditional model when --label is not given); 'null': the null condition c = 0."""
    caption: str | None = None
    """Caption to condition on (text-conditional models)."""
    guidance_weight: float | None = None
    """Classifier-free guidance weight w (Eq. 6; default: the config's)."""

    MINIMUMS: ClassVar[dict] = {**GenerateOptions.MINIMUMS, "guidance_weight": 0}
    FINITE: ClassVar[tuple] = GenerateOptions.FINITE + ("guidance_weight",)
    #: --label of a class-conditional model given neither --label nor --caption: "each" where
    #: nothing else says what to draw (sample), None (the null condition) where an input video
    #: or a base model's video does.
    DEFAULT_LABEL: ClassVar[str | None] = "each"

    def record(self, model) -> dict:
        """The condition the videos were generated with, for OUT.json: "caption" (which
        `python -m vdm_ref.support.eval.caption_fidelity OUT.npz --from-npz` reads) or "label"
        and "labels" (each video's class, which `python -m vdm_ref.support.eval.sample_quality`
        reads), and the guidance weight w of Eq. 6 in use (given, or the model config's) when a
        condition is."""
        label = self.class_label(model)
        given = {"caption": self.caption, "label": label,
                 "guidance_weight": self.used_guidance_weight(model) if self.asks_condition(model)
                 else self.guidance_weight}
        if label not in (None, "null") and model.unet.conditioning == "class":
            given["labels"] = self.class_labels(model.unet.num_classes, label)
        return {k: v for k, v in given.items() if v is not None}

    def used_guidance_weight(self, model) -> float:
        """w of Eq. 6 as sampled: --guidance-weight, else the model config's (`options`)."""
        return float(self.options(model, guidance_weight=self.guidance_weight).guidance_weight)

    def asks_condition(self, model) -> bool:
        """Whether the flags (or DEFAULT_LABEL) ask for a condition c rather than the null one."""
        return self.class_label(model) not in (None, "null") or self.caption is not None

    def class_label(self, model):
        """--label as used: DEFAULT_LABEL for a class-conditional model given neither --label nor
        --caption."""
        if self.label is None and self.caption is None and model.unet.conditioning == "class":
            return self.DEFAULT_LABEL
        return self.label

    def class_labels(self, num_classes: int, label=None) -> list[int]:
        """The class of each video: --label for all of them, or 0, 1, ..., num_classes - 1, 0, ...
        for --label each."""
        label = self.label if label is None else label
        if label == "each":
            return each_class(self.batch_size, num_classes)
        return [label] * self.batch_size

    def condition(self, model):
        """c of --label / --caption for a batch (`vdm_fast.inputs.ConditionEncoder`), checked
        against the model's conditioning; None (the null condition) for an unconditional model
        or a text model given no caption, and for --label null. A class-conditional model given
        neither flag gets DEFAULT_LABEL: in `sample` every class in turn (--label each), as its
        training previews do."""
        kind = model.unet.conditioning
        flag = {"class": "--label", "text": "--caption"}.get(kind)
        label = self.class_label(model)
        if label is not None and self.caption is not None:
            raise InputError("give --label or --caption, not both")
        if label != self.label:
            print(f"note: a class-conditional model; video i gets class i mod {model.unet.num_classes} "
                  "(--label each; --label N for one class, --label null for none), guided with "
                  f"w = {self.used_guidance_weight(model):g} (Eq. 6; --guidance-weight)", file=sys.stderr)
        if not self.asks_condition(model):
            if self.guidance_weight:
                raise InputError(f"--guidance-weight {self.guidance_weight} needs a condition: "
                                 + (f"the model is {kind}-conditional; pass {flag}" if flag
                                    else "the model is unconditional"))
            if label == "null" and kind != "class":
                raise InputError(f"--label null: the model is {'unconditional' if kind == 'none' else kind + '-conditional'}"
                                 + ("; leave out --caption for its null condition" if kind == "text" else ""))
            return None
        given = "--label" if label is not None else "--caption"
        if kind == "none":
            raise InputError(f"{given}: the model is unconditional, nothing can condition it"
                             + (f" (the shipped caption-conditioned model: --checkpoint {TEXT_CHECKPOINT})"
                                if given == "--caption" else ""))
        if given != flag:
            raise InputError(f"{given}: the model is {kind}-conditional; pass {flag}, not {given}"
                             + (f" (the shipped caption-conditioned model: --checkpoint {TEXT_CHECKPOINT})"
                                if given == "--caption" else ""))
        encoder = ConditionEncoder(model.unet)
        if kind == "class":
            if label != "each" and not 0 <= label < model.unet.num_classes:
                raise InputError(f"--label {label}: expected a class in [0, {model.unet.num_classes}), "
                                 "'each' or 'null'")
            return encoder.labels(self.class_labels(model.unet.num_classes, label))
        if not self.caption.strip():
            raise InputError("--caption is empty: give a caption, or leave --caption out to sample from the "
                             "null condition")
        why = unfamiliar_caption(model, self.caption)
        if why:
            print(f"note: {why}; sampling anyway", file=sys.stderr)
        tokens = encoder.caption_tokens(self.caption)
        if tokens > encoder.max_length:
            print(f"note: the caption has {tokens} tokens; the model reads the first {encoder.max_length} "
                  "([CLS] and [SEP] included), as in training", file=sys.stderr)
        return encoder.captions([self.caption] * self.batch_size)


@dataclasses.dataclass
class FromVideo(Conditioned):
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

    MINIMUMS: ClassVar[dict] = {**Conditioned.MINIMUMS, "clip": 0, "w_r": 0}
    FINITE: ClassVar[tuple] = Conditioned.FINITE + ("w_r",)
    DEFAULT_LABEL: ClassVar[str | None] = None  # the input video says what to draw

    def inputs(self) -> list[tuple[str, Path, bool]]:
        return super().inputs() + ([("--video", Path(self.video), True)] if self.video is not None else [])

    def source(self, model, num_frames: int, *, own_size: bool = False) -> np.ndarray:
        """The input video [batch_size, T, H, W, C]: --video (at its own size with `own_size`)
        or `num_frames` frames of dataset clip --clip; exactly one of them."""
        if (self.video is None) == (self.clip is None):
            raise InputError("give exactly one input: --video PATH (a video file or frame folder) or --clip INDEX "
                             "(a clip of the model's Moving MNIST dataset)")
        if self.video is not None:
            return load_input_video(self.video, model, batch_size=self.batch_size, resize=self.resize,
                                    own_size=own_size)
        return np.repeat(dataset_clips(model, [self.clip], num_frames=num_frames), self.batch_size, axis=0)

    def conditional_options(self, model):
        return self.options(model, method=self.method, w_r=self.w_r, replacement=self.replacement,
                            guidance_weight=self.guidance_weight)
