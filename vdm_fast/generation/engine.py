"""The one loop behind every generation command: fill a timeline of frames window by window.

A model samples F frames at a time (one block, `Model.frames`). Every task of Sec. 3.1 / 4 is a
timeline of N output frames of which some are known before sampling starts:

| task | known at full resolution | observed at low resolution |
|---|---|---|
| sample (N = F) | none | none |
| predict (1 → 15, 5 → 11) | the first k frames of a video | none |
| extend to any N | the video so far | none |
| interpolate ×k | every k-th frame (the low-frame-rate video) | none |
| upsample (Eq. 8) | none | every frame (or every k-th: the Fig. 2 cascade) |

`plan_windows` covers the timeline with windows of F consecutive frames, left to right: each
window starts `context_frames` before the first frame not yet filled (clamped to the timeline),
conditions on every frame in it that is known or already generated (Eq. 7, replacement of Sec.
3.1) and on the low-resolution frames in it (Eq. 8), and generates the rest. A window with
nothing to condition on is plain unconditional sampling.

Memory: the timeline lives on the host (NumPy); only the current window — F frames of the batch
— is on the device, so device memory does not grow with N, and every window has the same shape,
so the compiled sampler is reused from the second window on.

Randomness: window i uses `fold_in(key, i)`, split into the draws of z_1 and of the predictor,
corrector and replacement noise; the 'fast' backend draws them inside its compiled loop, the
'ref' backend materialises exactly the same draws (`vdm_fast.samplers.noise_from_key`) for the
reference samplers, so both backends sample the same video from the same key.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from vdm_fast.compile_options import filter_jit
from vdm_fast.inputs import null_condition
from vdm_ref.conditioning import REPLACEMENTS
from vdm_ref.samplers import LANGEVIN_DELTA

from .model import Model

METHODS = ("reconstruction", "replacement")
LOOPS = ("auto", "compiled", "python")


@dataclass(frozen=True)
class SamplerOptions:
    """How each window is sampled.

    - `steps`: sampling steps on the uniform grid t = 1 → 0 (Sec. 2).
    - `gamma`: γ of the ancestral sampler's variance (Eq. 4).
    - `corrector`: alternate each ancestral step with a Langevin correction (Eq. 5): the
      predictor-corrector sampler; `delta`: its step size δ.
    - `guidance_weight`: classifier-free guidance w (Eq. 6), for class/text-conditional models.
    - `method`: how a window conditions on known frames (Sec. 3.1): 'reconstruction' (guidance
      Eq. 7/8 with weight `w_r`, on top of replacement) or 'replacement' (w_r = 0).
    - `w_r`: the reconstruction guidance weight (ignored by 'replacement').
    - `replacement`: the replacement variant, 'marginal' zᵃ_s ~ q(zᵃ_s|xᵃ) or 'posterior'
      zᵃ_s ~ q(zᵃ_s|xᵃ, zᵃ_t).
    - `clip_x`: clip x̂ to the data range [−1, 1] at every step (static thresholding, as the
      training previews and Google's diffusion code do; not in the paper's text). The clip is
      straight-through: the value is clipped, the reconstruction-guidance gradient (Eq. 7/8) is
      that of the unclipped x̂, so guidance still acts where the model overshoots.
    - `loop`: 'compiled' (the whole sampling loop one XLA program, `vdm_fast.samplers`),
      'python' (`vdm_ref`'s loop calling the compiled network once per step) or 'auto'
      (`use_python_loop`). Both consume the same draws and give the same samples.
    """

    steps: int = 128
    gamma: float = 0.1
    corrector: bool = False
    delta: float = LANGEVIN_DELTA
    guidance_weight: float = 0.0
    method: str = "reconstruction"
    w_r: float = 5.0
    replacement: str = "marginal"
    loop: str = "auto"
    clip_x: bool = True

    def __post_init__(self):
        if self.loop not in LOOPS:
            raise ValueError(f"loop={self.loop!r}: expected one of {LOOPS}")
        if int(self.steps) != self.steps or self.steps < 2:
            raise ValueError(f"steps={self.steps!r}: expected an integer >= 2")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma!r}: expected a value in [0, 1]")
        if not self.delta > 0:
            raise ValueError(f"delta={self.delta!r}: expected a positive Langevin step size")
        if self.guidance_weight < 0:
            raise ValueError(f"guidance_weight={self.guidance_weight!r}: expected w >= 0")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {METHODS}")
        if self.w_r < 0:
            raise ValueError(f"w_r={self.w_r!r}: expected w_r >= 0")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"replacement={self.replacement!r}: expected one of {REPLACEMENTS}")

    @property
    def effective_w_r(self) -> float:
        """w_r as used: 0 for the replacement method."""
        return 0.0 if self.method == "replacement" else float(self.w_r)

    @classmethod
    def from_config(cls, diffusion, **overrides) -> "SamplerOptions":
        """The defaults of a model's `DiffusionConfig` (steps, γ, corrector, δ, w, w_r), then overrides
        (None values are ignored)."""
        base = dict(steps=diffusion.sampling_steps, gamma=diffusion.gamma,
                    corrector=diffusion.langevin_corrector, delta=diffusion.langevin_delta,
                    guidance_weight=diffusion.guidance_weight,
                    w_r=diffusion.recon_guidance_weight or cls.w_r)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclass(frozen=True)
class Window:
    """One block of sampling: F consecutive timeline frames from `start`.

    known: absolute frame indices whose full-resolution values condition it (given, or generated
    by an earlier window); low_res: indices with a low-resolution observation; generate: the
    indices it generates.
    """

    start: int
    size: int
    known: tuple[int, ...]
    low_res: tuple[int, ...]
    generate: tuple[int, ...]

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def conditional(self) -> bool:
        return bool(self.known or self.low_res)

    @property
    def boundary(self) -> int | None:
        """The first generated frame if a known frame comes before it (a block boundary), else None."""
        if not self.generate or not self.known or min(self.known) > self.generate[0]:
            return None
        return self.generate[0]


def plan_windows(length: int, block_frames: int, known=(), *, context_frames: int, low_res=()) -> list[Window]:
    """Cover a timeline of `length` frames with windows of `block_frames` (module docstring).

    known: indices given at full resolution; low_res: indices with a low-resolution observation;
    context_frames: how many frames before the first unfilled one each window includes (they are
    known or generated, so they condition it). A window whose last frames come after its last
    observation while a later observation lies beyond it does not generate them: they are
    generated by the next window, between the observations on both sides (interpolation, the
    Fig. 2 cascade). Raises ValueError for impossible plans.
    """
    n, f, c = int(length), int(block_frames), int(context_frames)
    known = sorted({int(i) for i in known})
    low = {int(i) for i in low_res}
    if n < 1:
        raise ValueError(f"length={length}: expected at least 1 frame")
    if f < 1:
        raise ValueError(f"block_frames={block_frames}: expected >= 1")
    if not 0 <= c < f:
        raise ValueError(f"context_frames={context_frames}: expected 0 <= context_frames < the model's "
                         f"block of {f} frames (each window must generate at least one new frame)")
    bad = [i for i in list(known) + sorted(low) if not 0 <= i < n]
    if bad:
        raise ValueError(f"frame indices {bad[:5]} are outside the timeline [0, {n})")
    filled = set(known)
    anchors = sorted(set(known) | low)
    windows = []
    size = min(f, n)
    while len(filled) < n:
        first = min(i for i in range(n) if i not in filled)
        start = min(max(0, first - c), n - size)
        frames = range(start, start + size)
        generate = [i for i in frames if i not in filled]
        # frames after the window's last observation, when another observation follows the window,
        # lie between two observations: leave them to the next window, which holds both
        inside = [a for a in anchors if first <= a < start + size]
        if inside and anchors and anchors[-1] >= start + size:
            generate = [i for i in generate if i <= inside[-1]]
        windows.append(Window(start, size, tuple(i for i in frames if i in filled),
                              tuple(i for i in frames if i in low), tuple(generate)))
        filled.update(generate)
    return windows


# ---------------------------------------------------------------------------------------------
# Conditioning c (class / text; encoded by `vdm_fast.inputs`) and classifier-free guidance


def _check_cond(model: Model, cond, batch: int):
    kind = model.unet.conditioning
    if cond is None:
        return None
    if kind == "none":
        raise ValueError("a condition was given but the model is unconditional (conditioning='none')")
    if kind == "class":
        cond = jnp.asarray(cond, jnp.float32)
        if cond.shape != (batch, model.unet.num_classes):
            raise ValueError(f"class condition has shape {cond.shape}: expected a one-hot [B, num_classes] = "
                             f"({batch}, {model.unet.num_classes})")
        return cond
    tokens, token_mask = cond
    tokens = jnp.asarray(tokens, jnp.float32)
    token_mask = jnp.asarray(token_mask, bool)
    if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[2] != model.unet.text_dim:
        raise ValueError(f"text tokens have shape {tokens.shape}: expected [B, L, {model.unet.text_dim}] with B={batch}")
    return (tokens, token_mask)


def guided_denoiser(model: Model, cond, w: float, clip_x: bool = False):
    """denoise_fn(z, λ) -> x̂ for the samplers: x̂(z, λ, c), with classifier-free guidance (Eq. 6)
    (1 + w) x̂(z, c) − w x̂(z, 0) when c is given and w > 0; clipped to [−1, 1] (straight-through)
    with clip_x. A pytree-callable."""
    if cond is not None and w > 0:
        from vdm_fast.guidance import classifier_free_denoiser

        fn = classifier_free_denoiser(model.denoiser, cond, null_condition(cond), w)
    else:
        fn = _Bound(model.denoiser, cond)
    return _ClipX(fn) if clip_x else fn


class _ClipX(eqx.Module):
    """clip(x̂, −1, 1) in value, with x̂'s gradient (straight-through)."""

    denoise_fn: object

    def __call__(self, z, logsnr):
        x = self.denoise_fn(z, logsnr)
        return x + jax.lax.stop_gradient(jnp.clip(x, -1.0, 1.0) - x)


class _Bound(eqx.Module):
    """x̂(z, λ) = denoiser(z, λ, c) with c fixed (a pytree-callable)."""

    denoiser: object
    cond: object

    def __call__(self, z, logsnr):
        return self.denoiser(z, logsnr, self.cond)


# ---------------------------------------------------------------------------------------------
# Sampling one window


def window_keys(key, index: int):
    """The keys of window `index`: (z_1, predictor noise, corrector noise, replacement noise)."""
    k = jax.random.fold_in(key, index)
    return tuple(jax.random.fold_in(k, j) for j in range(4))


def as_key(key):
    """An int seed or a jax key -> a jax key."""
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key


def _grid(model: Model, steps: int):
    from vdm_ref.schedule import logsnr_grid

    d = model.config.diffusion
    return np.asarray(logsnr_grid(steps, d.logsnr_min, d.logsnr_max, shift=d.logsnr_shift), np.float32)


def sample_window(model: Model, keys, shape, options: SamplerOptions, denoise_fn, *, x=None, mask=None,
                  low_res=None, low_res_mask=None, factor: int = 1, progress=None):
    """Sample one window [B, F, H, W, C] (float32 jax array): unconditional when nothing is observed,
    else conditional on x where mask = 1 and/or low_res where low_res_mask = 1 (Sec. 3.1)."""
    k_z, k_noise, k_corr, k_repl = keys
    grid = _grid(model, options.steps)
    z = jax.random.normal(k_z, shape, jnp.float32)
    conditional = x is not None or low_res is not None
    if model.compiled_sampler and not use_python_loop(options, conditional):
        from vdm_fast import conditioning, samplers

        corr = k_corr if options.corrector else None
        if not conditional:
            return samplers.reverse_process(denoise_fn, z, grid, k_noise, corr, gamma=options.gamma,
                                            delta=options.delta, progress=progress)
        obs = conditioning.Observation(x, mask, low_res, low_res_mask, factor)
        if options.effective_w_r == 0:  # replacement: the guidance term is 0, skip the backward pass
            from vdm_fast.guidance import DenoiseVJP

            denoise_fn = DenoiseVJP(_NoBackward(denoise_fn))
        return conditioning.sample_conditional(
            denoise_fn, z, grid, k_noise, k_repl, obs, w_r=options.effective_w_r,
            replacement=options.replacement, gamma=options.gamma, corrector_noise=corr,
            delta=options.delta, progress=progress)
    # Python loops of vdm_ref around the compiled network (the 'ref' backend, or 'fast' with
    # loop='python'), consuming the same draws
    from vdm_fast.samplers import noise_from_key
    from vdm_ref import conditioning, guidance, samplers

    steps = options.steps
    jitted = _jit_call(denoise_fn) if isinstance(denoise_fn, eqx.Module) else denoise_fn
    counted = _Counting(jitted, (2 if options.corrector else 1) * (steps - 1) + 1, progress)
    noise = noise_from_key(k_noise, steps - 1, shape)
    corr = noise_from_key(k_corr, steps - 1, shape) if options.corrector else None
    grid = jnp.asarray(grid)
    if not conditional:
        return samplers.reverse_process(counted, z, grid, noise, corr, gamma=options.gamma, delta=options.delta)
    obs = conditioning.Observation(x, mask, low_res, low_res_mask, factor)
    return conditioning.sample_conditional(
        guidance.with_jax_vjp(counted), z, grid, noise, noise_from_key(k_repl, steps, shape), obs,
        w_r=options.effective_w_r, replacement=options.replacement, gamma=options.gamma,
        corrector_noise=corr, delta=options.delta)


def use_python_loop(options: SamplerOptions, conditional: bool) -> bool:
    """Whether a window runs vdm_ref's Python sampler loop around the compiled network instead
    of the whole-loop compiled sampler (`SamplerOptions.loop`; 'auto': only for
    reconstruction-guided windows on CPU, where XLA runs the network's backward pass inside a
    compiled loop ≈ 4.5x slower than the same step called from Python)."""
    if options.loop == "python":
        return True
    if options.loop == "compiled":
        return False
    return conditional and options.effective_w_r > 0 and jax.default_backend() == "cpu"


class _NoBackward(eqx.Module):
    """(x̂, g ↦ 0): a denoise_vjp for w_r = 0, where the guidance gradient is multiplied by 0
    anyway — so the replacement method costs one forward evaluation per step."""

    denoise_fn: object

    def __call__(self, z, logsnr):
        x_hat = self.denoise_fn(z, logsnr)
        return x_hat, lambda g: jnp.zeros_like(g)


def _call(fn, z, logsnr):
    return fn(z, logsnr)


_compiled_call = filter_jit(_call)


def _jit_call(fn):
    """The network evaluation compiled (the reference loop around it stays Python)."""
    return lambda z, logsnr: _compiled_call(fn, z, logsnr)


class _Counting:
    """Wraps a Python-loop denoiser to report progress(done, total) per network evaluation."""

    def __init__(self, fn, total, progress):
        self.fn, self.total, self.progress, self.done = fn, total, progress, 0

    def __call__(self, z, logsnr):
        out = self.fn(z, logsnr)
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
        return out


# ---------------------------------------------------------------------------------------------
# The timeline loop


@dataclass(frozen=True)
class Timeline:
    """What a generation knows before sampling: N frames of a batch of B videos.

    - `length`: N; `batch`: B.
    - `video`: host float32 [B, N, H, W, C] with the known frames filled in (zeros elsewhere), or
      None when no frame is known; `known`: their indices.
    - `low_res`: host float32 [B, N, h, w, C] with the low-resolution frames at `low_res_frames`,
      or None; `factor`: H / h.
    """

    length: int
    batch: int
    video: np.ndarray | None = None
    known: tuple[int, ...] = ()
    low_res: np.ndarray | None = None
    low_res_frames: tuple[int, ...] = ()
    factor: int = 1


@contextlib.contextmanager
def _bars(enabled: bool, blocks: int, desc: str):
    if not enabled:
        yield None, None
        return
    from tqdm.auto import tqdm

    outer = tqdm(total=blocks, desc=desc, unit="block", position=0)
    inner = tqdm(total=1, desc="  network evaluations", unit="eval", position=1, leave=False)
    try:
        yield outer, inner
    finally:
        inner.close()
        outer.close()


def iter_windows(model: Model, key, timeline: Timeline, *, context_frames: int, options: SamplerOptions,
                 cond=None, progress: bool = False, desc: str = "blocks") -> Iterator[tuple[Window, np.ndarray]]:
    """Sample the timeline window by window, yielding (window, video so far on the host).

    The host array is updated in place after each window; only the window is on the device.
    """
    f = model.frames
    windows = plan_windows(timeline.length, f, timeline.known, context_frames=context_frames,
                           low_res=timeline.low_res_frames)
    h = w = model.image_size
    b = timeline.batch
    if timeline.low_res is not None and options.effective_w_r == 0:
        raise ValueError("conditioning on a low-resolution video needs reconstruction guidance (Eq. 8) with "
                         "w_r > 0: the replacement method has nothing to replace at full resolution")
    if timeline.video is not None:
        out = np.array(timeline.video, np.float32, copy=True)
    else:
        out = np.zeros((b, timeline.length, h, w, model.channels), np.float32)
    cond = _check_cond(model, cond, b)
    denoise_fn = guided_denoiser(model, cond, options.guidance_weight, options.clip_x)
    key = as_key(key)
    with _bars(progress, len(windows), desc) as (outer, inner):
        for i, win in enumerate(windows):
            sl = slice(win.start, win.stop)
            shape = (b, win.size, h, w, model.channels)
            kw = {}
            if win.known:
                mask = np.zeros((1, win.size, 1, 1, 1), np.float32)
                mask[0, [j - win.start for j in win.known]] = 1.0
                kw.update(x=jnp.asarray(out[:, sl]), mask=jnp.asarray(mask))
            if win.low_res:
                lmask = np.zeros((1, win.size, 1, 1, 1), np.float32)
                lmask[0, [j - win.start for j in win.low_res]] = 1.0
                kw.update(low_res=jnp.asarray(timeline.low_res[:, sl]), low_res_mask=jnp.asarray(lmask),
                          factor=timeline.factor)

            def report(done, total):
                inner.total = total
                inner.n = done
                inner.refresh()

            x = sample_window(model, window_keys(key, i), shape, options, denoise_fn,
                              progress=report if inner is not None else None, **kw)
            x = np.asarray(x, np.float32)
            gen = [j - win.start for j in win.generate]
            out[:, win.generate] = x[:, gen]
            if outer is not None:
                outer.update(1)
                inner.n = 0
            yield win, out


def run_timeline(model: Model, key, timeline: Timeline, **kwargs) -> tuple[np.ndarray, list[Window]]:
    """`iter_windows` to the end: (the video [B, N, H, W, C] on the host, the windows)."""
    windows, out = [], None
    for win, out in iter_windows(model, key, timeline, **kwargs):
        windows.append(win)
    if out is None:  # everything was known
        out = np.array(timeline.video, np.float32, copy=True)
    return out, windows
