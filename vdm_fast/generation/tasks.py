"""The generation tasks of Sec. 3.1 and 4 over any model: sample, predict, extend, interpolate,
upsample, and the spatial + temporal cascade of Fig. 2.

Each builds a `Timeline` (what is known before sampling) and runs `engine.run_timeline`; each
checks its inputs before any sampling starts and returns host NumPy float32 videos
[B, N, H, W, C] in [-1, 1]. `key` is an int seed or a `jax.random` key. `options` is a
`SamplerOptions` (default: the model config's sampling settings).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .engine import SamplerOptions, Timeline, run_timeline
from .model import Model


def _options(model: Model, options: SamplerOptions | None) -> SamplerOptions:
    return SamplerOptions.from_config(model.config.diffusion) if options is None else options


def _context(model: Model, context_frames: int | None) -> int:
    """Default extension context: half a block (the other half is new frames)."""
    return model.frames // 2 if context_frames is None else int(context_frames)


def _host_video(video, name: str) -> np.ndarray:
    v = np.asarray(video, np.float32)
    if v.ndim == 4:
        v = v[None]
    if v.ndim != 5:
        raise ValueError(f"{name} has shape {np.shape(video)}: expected [B, T, H, W, C] or [T, H, W, C]")
    return v


def sample(model: Model, key, *, batch_size: int = 1, length: int | None = None, cond=None,
           options: SamplerOptions | None = None, context_frames: int | None = None,
           progress: bool = False, return_windows: bool = False):
    """Unconditional, class- or text-conditional samples x ~ p_θ(x | c) (classifier-free
    guidance w = options.guidance_weight, Eq. 6).

    length: frames per video (default one block, F); longer videos are extended block by block
    (each block conditioned on the last `context_frames` frames, default F/2, by
    `options.method`). cond: None, a one-hot [B, num_classes] or (tokens [B, L, D], mask [B, L]).
    Returns [batch_size, length, H, W, C] (and the windows with `return_windows`).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size}: expected >= 1")
    n = model.frames if length is None else int(length)
    video, windows = run_timeline(model, key, Timeline(n, int(batch_size)), context_frames=_context(model, context_frames),
                                  options=_options(model, options), cond=cond, progress=progress, desc="sample")
    return (video, windows) if return_windows else video


def predict(model: Model, key, video, *, given_frames: int, length: int | None = None, cond=None,
            options: SamplerOptions | None = None, context_frames: int | None = None,
            progress: bool = False, return_windows: bool = False):
    """Video prediction (Sec. 4.2): condition on the first `given_frames` frames of `video` and
    generate the rest (1 → 15 frames as on BAIR, 5 → 11 as on Kinetics-600).

    video: [B, T, H, W, C] with T >= given_frames (frames after them are ignored). length: total
    frames (default one block, F); beyond F the prediction continues block by block.
    Returns [B, length, H, W, C] whose first `given_frames` frames are the given ones.
    """
    v = _host_video(video, "video")
    k = int(given_frames)
    n = model.frames if length is None else int(length)
    if k < 1:
        raise ValueError(f"given_frames={given_frames}: expected at least 1 conditioning frame")
    model.check_video(v, "the video to predict from")
    if v.shape[1] < k:
        raise ValueError(f"the video has {v.shape[1]} frames, fewer than the {k} conditioning frames asked for")
    if n <= k:
        raise ValueError(f"length={n}: expected more frames than the {k} given ones")
    if k >= model.frames:
        raise ValueError(f"given_frames={k}: expected fewer than the model's block of {model.frames} frames")
    known = np.zeros((v.shape[0], n) + v.shape[2:], np.float32)
    known[:, :k] = v[:, :k]
    out, windows = run_timeline(model, key, Timeline(n, v.shape[0], known, tuple(range(k))),
                                context_frames=_context(model, context_frames) if n > model.frames else min(k, model.frames - 1),
                                options=_options(model, options), cond=cond, progress=progress, desc="predict")
    return (out, windows) if return_windows else out


def extend(model: Model, key, video, length: int, *, context_frames: int | None = None, cond=None,
           options: SamplerOptions | None = None, progress: bool = False, return_windows: bool = False):
    """Autoregressive extension (Sec. 3.1, 4.3.3): each new block of F frames starts with the last
    `context_frames` frames of the video so far (default F/2) and generates the other F − c,
    conditioned on them by `options.method` ('reconstruction' or 'replacement').

    video: [B, T, H, W, C], T >= context_frames. Returns [B, length, H, W, C] whose first T
    frames are `video`. Device memory stays one block whatever the length.
    """
    v = _host_video(video, "video")
    c = _context(model, context_frames)
    if not 0 < c < model.frames:
        raise ValueError(f"context_frames={c}: expected 0 < context_frames < the model's block of {model.frames} frames")
    model.check_video(v, "the video to extend", frames=c)
    n = int(length)
    t = v.shape[1]
    if n <= t:
        raise ValueError(f"length={n}: expected more frames than the video's {t}")
    known = np.zeros((v.shape[0], n) + v.shape[2:], np.float32)
    known[:, :t] = v
    out, windows = run_timeline(model, key, Timeline(n, v.shape[0], known, tuple(range(t))), context_frames=c,
                                options=_options(model, options), cond=cond, progress=progress, desc="extend")
    return (out, windows) if return_windows else out


def interpolate(model: Model, key, video, factor: int, *, context_frames: int | None = None, cond=None,
                options: SamplerOptions | None = None, progress: bool = False, return_windows: bool = False):
    """Temporal upsampling (Sec. 3.1): the frames of `video` [B, T, ...] become frames 0, k, 2k, ...
    of a video of (T − 1) k + 1 frames; the k − 1 frames between each pair are generated,
    conditioned on the known frames (and on `context_frames` already generated frames, default
    F/4, before each new window).

    factor: k >= 2, with k < F so that a window holds two known frames.
    """
    v = _host_video(video, "video")
    k = int(factor)
    model.check_video(v, "the video to interpolate")
    if k < 2:
        raise ValueError(f"factor={factor}: expected >= 2 (frames per input frame interval)")
    if k >= model.frames:
        raise ValueError(f"factor={k}: expected < the model's block of {model.frames} frames, so that a block "
                         "holds two known frames")
    t = v.shape[1]
    if t < 2:
        raise ValueError(f"the video has {t} frame: interpolation needs at least 2")
    n = (t - 1) * k + 1
    known = np.zeros((v.shape[0], n) + v.shape[2:], np.float32)
    known[:, ::k] = v
    c = model.frames // 4 if context_frames is None else int(context_frames)
    out, windows = run_timeline(model, key, Timeline(n, v.shape[0], known, tuple(range(0, n, k))), context_frames=c,
                                options=_options(model, options), cond=cond, progress=progress, desc="interpolate")
    return (out, windows) if return_windows else out


def upsample(model: Model, key, low_res, *, frameskip: int = 1, context_frames: int | None = None, cond=None,
             options: SamplerOptions | None = None, progress: bool = False, return_windows: bool = False):
    """Spatial super-resolution by reconstruction guidance (Eq. 8) with an unconditional
    high-resolution model, optionally at the same time temporal (Fig. 2).

    low_res: [B, T, h, w, C] with H = k h for the model's size H (integer k >= 1, the
    downsampling `vdm_ref.guidance.downsample_area` inverts). frameskip: the low-resolution video's
    frames are every `frameskip`-th output frame, so the output has (T − 1) frameskip + 1 frames
    at full rate (the Fig. 2 cascade: frameskip 4). Longer outputs than a block are extended
    autoregressively at high resolution, each block also conditioned on the last
    `context_frames` (default F/2) high-resolution frames (Eq. 7 and 8 at once).
    Needs options.method = 'reconstruction' with w_r > 0.
    """
    lo = _host_video(low_res, "low_res")
    b, t, h, w, c = lo.shape
    size = model.image_size
    if c != model.channels:
        raise ValueError(f"the low-resolution video has {c} channels: the model takes {model.channels}")
    if h != w or size % h:
        raise ValueError(f"the low-resolution video is {h}x{w}: expected square frames whose size divides the "
                         f"model's {size}x{size}")
    s = int(frameskip)
    if s < 1:
        raise ValueError(f"frameskip={frameskip}: expected >= 1")
    if s >= model.frames:
        raise ValueError(f"frameskip={s}: expected < the model's block of {model.frames} frames")
    n = (t - 1) * s + 1
    low = np.zeros((b, n, h, w, c), np.float32)
    low[:, ::s] = lo
    options = _options(model, options)
    if options.effective_w_r == 0:
        raise ValueError("upsample needs reconstruction guidance (method='reconstruction', w_r > 0): Eq. 8 is the "
                         "only way an unconditional model conditions on a low-resolution video")
    out, windows = run_timeline(model, key, Timeline(n, b, low_res=low, low_res_frames=tuple(range(0, n, s)),
                                                     factor=size // h),
                                context_frames=_context(model, context_frames), options=options, cond=cond,
                                progress=progress, desc="upsample")
    return (out, windows) if return_windows else out


class CascadeResult(NamedTuple):
    """What `cascade` returns: the base's video low [B, T, h, w, C], the final video high
    [B, (T − 1) k + 1, H, W, C], the second stage's windows, and each stage's wall time (s)."""

    low: np.ndarray
    high: np.ndarray
    windows: tuple
    seconds: dict


def cascade(low_model: Model, high_model: Model, key, *, batch_size: int = 1, low_frames: int | None = None,
            frameskip: int = 4, low_cond=None, high_cond=None, low_options: SamplerOptions | None = None,
            high_options: SamplerOptions | None = None, context_frames: int | None = None,
            progress: bool = False) -> CascadeResult:
    """The Fig. 2 cascade: sample a low-resolution video at frameskip k with `low_model`
    (conditioned on `low_cond`), then upsample it in space and fill it in time to full frame rate
    with `high_model` (conditioned on `high_cond`), by reconstruction guidance (Eq. 7 + 8).

    The base's draws use fold_in(key, 0), the second stage's fold_in(key, 1).
    """
    import time

    import jax

    from .engine import as_key

    key = as_key(key)
    t0 = time.perf_counter()
    low = sample(low_model, jax.random.fold_in(key, 0), batch_size=batch_size, length=low_frames, cond=low_cond,
                 options=low_options, progress=progress)
    t1 = time.perf_counter()
    high, windows = upsample(high_model, jax.random.fold_in(key, 1), low, frameskip=frameskip,
                             context_frames=context_frames, cond=high_cond, options=high_options,
                             progress=progress, return_windows=True)
    seconds = {"base": round(t1 - t0, 2), "second_stage": round(time.perf_counter() - t1, 2)}
    return CascadeResult(low, high, tuple(windows), seconds)
