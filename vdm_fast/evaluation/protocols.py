"""The evaluation protocols of the paper (Sec. 4.1-4.3) adapted to a model's frame count, and
what the I3D network is shown (RGB, at least 9 frames). See the package docstring."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("unconditional", "bair", "kinetics", "extend")
#: (frames given, frames in total) of the paper's video-prediction protocols (Sec. 4.2).
PAPER_PREDICTION = {"bair": (1, 16), "kinetics": (5, 16)}
I3D_MIN_FRAMES = 9
SHORT_CLIPS = ("repeat", "refuse")


class EvaluationError(ValueError):
    """A request that cannot be evaluated (names the value and what was expected); raised before
    any sampling or embedding."""


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol on a model of `block` frames.

    given: frames given (conditioning; 0 = none); length: frames per video (given included, as in
    the BAIR/Kinetics FVD); note: how it relates to the paper's protocol.
    """

    name: str
    given: int
    length: int
    block: int
    note: str

    @property
    def conditional(self) -> bool:
        """Whether a conditioning method (replacement / reconstruction guidance) is involved."""
        return self.given > 0 or self.length > self.block


def plan_protocol(name: str, block: int, *, length: int | None = None, extend_factor: int = 4) -> Protocol:
    """The protocol `name` for a model of `block` frames (see the module docstring).

    length: frames per video for 'unconditional' / 'bair' / 'kinetics' (default: one block for
    'unconditional', min(block, 16) for the prediction protocols). extend_factor: the length of
    'extend' in blocks (the paper's Table 6: 4, 16 -> 64 frames).
    """
    if name not in PROTOCOLS:
        raise EvaluationError(f"protocol {name!r}: expected one of {PROTOCOLS}")
    f = int(block)
    if name == "unconditional":
        n = f if length is None else int(length)
        if n < 1:
            raise EvaluationError(f"length={length}: expected >= 1")
        note = "one block from noise" if n == f else f"{n} frames: one block, then extended block by block"
        return Protocol(name, 0, n, f, note)
    if name == "extend":
        if int(extend_factor) < 2:
            raise EvaluationError(f"extend_factor={extend_factor}: expected >= 2 blocks")
        n = int(extend_factor) * f
        return Protocol(name, 0, n, f, f"{extend_factor}x autoregressive extension: one block of {f} frames from "
                                       f"noise, then extended to {n} frames (paper, Table 6: 16 -> 64)")
    given, paper_total = PAPER_PREDICTION[name]
    n = min(f, paper_total) if length is None else int(length)
    if given >= f:
        raise EvaluationError(f"protocol {name!r} conditions on {given} frames, but the model's block is {f} frames: "
                              f"it cannot generate anything after them in a block")
    if n <= given:
        raise EvaluationError(f"length={n}: protocol {name!r} needs more than its {given} given frames")
    paper = f"{given} -> {paper_total - given}"
    if n == paper_total:
        note = f"{given} -> {n - given}, as in the paper" + (
            "" if n <= f else f" (carried on block by block: the model's block is {f} frames)")
    else:
        note = (f"{given} -> {n - given} on {n} frames (paper: {paper} on {paper_total}; the model's block is {f} "
                f"frames; pass --length {paper_total} for the paper's count, carried on block by block)")
    return Protocol(name, given, n, f, note)


def i3d_input(videos: np.ndarray, *, short_clips: str = "repeat") -> tuple[np.ndarray, str]:
    """Videos [N, T, H, W, C] as I3D takes them: RGB (grey repeated over 3 channels) and at least
    9 frames (each frame repeated k = ceil(9 / T) times when `short_clips='repeat'`).

    Returns (videos [N, T', H, W, 3] float32, a note saying what was done, '' if nothing).
    """
    if short_clips not in SHORT_CLIPS:
        raise EvaluationError(f"short_clips={short_clips!r}: expected one of {SHORT_CLIPS}")
    v = np.asarray(videos, np.float32)
    if v.ndim != 5:
        raise EvaluationError(f"videos have shape {v.shape}: expected [N, T, H, W, C]")
    notes = []
    if v.shape[-1] == 1:
        v = np.repeat(v, 3, axis=-1)
        notes.append("grey repeated over RGB")
    elif v.shape[-1] != 3:
        raise EvaluationError(f"videos have {v.shape[-1]} channels: I3D takes 3 (RGB) or 1 (repeated)")
    t = v.shape[1]
    k = repeat_factor(t, short_clips)
    if k > 1:
        v = np.repeat(v, k, axis=1)
        notes.append(f"{t} frames < {I3D_MIN_FRAMES} (I3D's minimum): each frame repeated {k}x -> {t * k} frames")
    return v, "; ".join(notes)


def repeat_factor(frames: int, short_clips: str = "repeat") -> int:
    """k = ceil(9 / T) for T < 9 with 'repeat' (1 otherwise); EvaluationError for 'refuse'."""
    if frames >= I3D_MIN_FRAMES:
        return 1
    if short_clips == "refuse":
        raise EvaluationError(f"videos of {frames} frames: I3D needs at least {I3D_MIN_FRAMES} (FVD and IS are "
                              "undefined); pass --short-clips repeat to show each frame ceil(9/T) times, or "
                              "--length >= 9 to generate longer videos block by block")
    return math.ceil(I3D_MIN_FRAMES / frames)
