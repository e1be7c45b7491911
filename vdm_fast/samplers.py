"""Samplers (Sec. 2), compiled whole: the ancestral sampler (Eq. 4) and the predictor-corrector
sampler that alternates Eq. 4 with the Langevin corrector (Eq. 5).

Twin of `vdm_ref.samplers`, with the same leading signature:

    sampler(denoise_fn, z, logsnrs, noise, ..., *, options)

- denoise_fn(z [B, ...], λ [B]) -> x̂ [B, ...]. Pass a pytree-callable — an `eqx.Module` or a
  `jax.tree_util.Partial` — so that the model's weights are traced arguments of the compiled
  program, not constants baked into it (a plain Python function is static: fine for a closed-form
  denoiser, but each new function object compiles anew).
- z: z_1 ~ N(0, I), [B, ...]; logsnrs: the λ grid [steps + 1] from t = 1 to t = 0.
- noise, corrector_noise: each either an array of draws [steps − 1, B, ...], as in the reference,
  or a `jax.random` key (typed or raw). With a key, draw i is made inside the loop as
  `jax.random.normal(jax.random.fold_in(key, i), z.shape, float32)`, so memory does not grow with
  the number of steps; `noise_from_key(key, steps - 1, z.shape)` materialises exactly those draws
  as an array, for the reference (or this sampler) to consume the same noise.

What is compiled: one XLA program per configuration (denoiser structure, shapes, dtypes, key or
array noise, with or without corrector, progress on or off). The whole loop is one
`lax.fori_loop`; γ and δ (and any weights inside the denoiser, e.g. the classifier-free w) are
traced float32 scalars, and the grid values are traced too, so changing them does not recompile.
Every network evaluation of the loop goes through a single call site (a `lax.switch` picks the
predictor, corrector or final update that follows it), so the network is traced and compiled once.

Dtypes: z, logsnrs and noise arrays are cast to float32; the denoiser sees float32 z and λ and its
output is cast to float32 (a bf16 network keeps a float32 sampler state).

Progress: `progress(done, total)` (network evaluations done / in all) is called from the compiled
loop through `jax.debug.callback` every `progress_every` evaluations; off by default. The callback
is looked up at run time, so a new callback object does not recompile; with a callback the call
returns once the samples are ready (it waits for the last report).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

from vdm_ref import samplers as _ref
from vdm_ref.samplers import LANGEVIN_DELTA

from .compile_options import filter_jit
from .parameterization import eps_from_x
from .schedule import DTYPE, _float32


@jax.jit
def ancestral_step(z_t, x_hat, logsnr_s, logsnr_t, noise, gamma):
    """z_s = μ̃_{s|t}(z_t, x̂_θ(z_t)) + sqrt((σ̃²_{s|t})^{1−γ} (σ²_{t|s})^{γ}) ε  (Eq. 4), float32.

    z_t, x_hat, noise: [B, ...]; logsnr_s, logsnr_t: [B] with λ_s > λ_t; γ in [0, 1] (traced).
    """
    return _ref.ancestral_step(*_float32(z_t, x_hat, logsnr_s, logsnr_t, noise, gamma))


@jax.jit
def langevin_step(z_s, eps_hat, logsnr_s, noise, delta=LANGEVIN_DELTA):
    """z_s ← z_s − ½ δ σ_s ε̂_θ(z_s) + sqrt(δ) σ_s ε′  (Eq. 5), float32; δ traced."""
    return _ref.langevin_step(*_float32(z_s, eps_hat, logsnr_s, noise, delta))


def per_step_logsnr(logsnrs, i, z):
    """λ at grid point i as a per-example [B] float32 array for a batch z [B, ...] (i may be traced)."""
    return jnp.full((z.shape[0],), logsnrs[i], dtype=DTYPE)


# --- noise: arrays of draws or a key ------------------------------------------------------------


def is_key(a):
    """True if `a` is a `jax.random` key (typed key array, or a raw unsigned-integer key)."""
    dtype = getattr(a, "dtype", None)
    return dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key)
                                  or jnp.issubdtype(dtype, jnp.unsignedinteger))


@functools.partial(jax.jit, static_argnames=("count", "shape", "dtype"))
def _noise_from_key(key, count, shape, dtype):
    draw = lambda i: jax.random.normal(jax.random.fold_in(key, i), shape, dtype)
    return jax.vmap(draw)(jnp.arange(count))


def noise_from_key(key, count, shape, dtype=DTYPE):
    """The draws a fast sampler makes from `key`, as an array [count, *shape].

    Draw i is `jax.random.normal(jax.random.fold_in(key, i), shape, dtype)`, bit for bit what the
    compiled loop draws at step i. Counts: `noise` and `corrector_noise` of a sampler with
    `steps` steps have steps − 1 draws; the conditional sampler's `replace_noise` has steps.
    """
    return _noise_from_key(key, int(count), tuple(int(n) for n in shape), jnp.dtype(dtype))


def _draw(source, i, shape):
    """Draw i of a noise source: the array's row i, or normal(fold_in(key, i)) for a key."""
    if is_key(source):
        return jax.random.normal(jax.random.fold_in(source, i), shape, DTYPE)
    return source[i]


def _check_source(name, source, count, z):
    """Validate a noise argument at the boundary; return it as a float32 array or as the key."""
    if is_key(source):
        key_shape = () if jnp.issubdtype(source.dtype, jax.dtypes.prng_key) else (2,)
        if tuple(source.shape) != key_shape:
            raise ValueError(f"{name}: a key must be a single jax.random key (shape {key_shape}), "
                             f"got shape {tuple(source.shape)}")
        return source
    expected = (count,) + tuple(z.shape)
    if tuple(getattr(source, "shape", ())) != expected:
        raise ValueError(f"{name} must be a jax.random key or an array of shape "
                         f"[{count}, *z.shape] = {expected}, got {tuple(getattr(source, 'shape', ()))}")
    return _float32(source)


def _check_grid(z, logsnrs):
    """Validate z and the λ grid; return both as float32 arrays and the number of steps."""
    z, logsnrs = _float32(z, logsnrs)
    if logsnrs.ndim != 1 or logsnrs.shape[0] < 2:
        raise ValueError(f"logsnrs must be a grid of shape [steps + 1] with steps ≥ 1, got shape {logsnrs.shape}")
    if z.ndim < 1:
        raise ValueError(f"z must have a batch axis, [B, ...], got shape {z.shape}")
    return z, logsnrs, logsnrs.shape[0] - 1


# --- progress callback --------------------------------------------------------------------------

_PROGRESS = {}
_TOKENS = itertools.count()


def _report_progress(token, done, total):
    callback = _PROGRESS.get(int(token))
    if callback is not None:
        callback(int(done), int(total))


def _run(jitted, progress, progress_every, *args):
    """Call a compiled sampler, with the progress callback registered under a traced token."""
    if progress is None:
        return jitted(*args, None, 1)
    if int(progress_every) != progress_every or progress_every < 1:
        raise ValueError(f"progress_every must be a positive integer, got {progress_every!r}")
    token = next(_TOKENS)
    _PROGRESS[token] = progress
    try:
        out = jax.block_until_ready(jitted(*args, jnp.asarray(token, dtype=jnp.int32), int(progress_every)))
        jax.effects_barrier()
    finally:
        del _PROGRESS[token]
    return out


# --- the compiled loop ----------------------------------------------------------------------------


def _loop(denoise_fn, z, logsnrs, noise, corrector_noise, gamma, delta, replace_fn, update_mask,
          progress_token, progress_every):
    """The reverse process as one `lax.fori_loop` over network evaluations (traced, not jitted).

    Without corrector, evaluation k is the predictor at grid point k; with it, evaluations
    alternate predictor (k = 2i, at λ_i) and corrector (k = 2i + 1, at λ_{i+1}, on the new z_s).
    The last evaluation (at λ_{steps−1}) returns x̂. Same order of operations as the reference's
    Python loop, so the two consume the same draws in the same places.
    """
    steps = logsnrs.shape[0] - 1
    pc = corrector_noise is not None
    evals = (2 if pc else 1) * (steps - 1) + 1

    def body(k, z):
        i, j = (k // 2, (k + 1) // 2) if pc else (k, k)  # predictor step i; network at λ_j
        logsnr = per_step_logsnr(logsnrs, j, z)
        x_hat = jnp.asarray(denoise_fn(z, logsnr), dtype=DTYPE)

        def final():
            return x_hat

        def predictor():  # Eq. 4, then the replacement of Sec. 3.1
            logsnr_s = per_step_logsnr(logsnrs, i + 1, z)
            z_s = ancestral_step(z, x_hat, logsnr_s, logsnr, _draw(noise, i, z.shape), gamma)
            return z_s if replace_fn is None else replace_fn(z_s, z, logsnr_s, logsnr, i)

        def corrector():  # Eq. 5 on the entries being generated
            eps_hat = eps_from_x(z, x_hat, logsnr)
            z_new = langevin_step(z, eps_hat, logsnr, _draw(corrector_noise, i, z.shape), delta)
            return z_new if update_mask is None else update_mask * z_new + (1 - update_mask) * z

        branches = [final, predictor] + ([corrector] if pc else [])
        which = jnp.where(k == evals - 1, 0, 1 + (k % 2 if pc else 0))
        z = lax.switch(which, branches)
        if progress_token is not None:
            done = k + 1
            lax.cond((done % progress_every == 0) | (done == evals),
                     lambda: jax.debug.callback(_report_progress, progress_token, done, evals),
                     lambda: None)
        return z

    return lax.fori_loop(0, evals, body, z)


_compiled_loop = filter_jit(_loop)


def reverse_process(denoise_fn, z, logsnrs, noise, corrector_noise=None, *, gamma=0.0,
                    delta=LANGEVIN_DELTA, replace_fn=None, update_mask=None, progress=None,
                    progress_every=1):
    """The loop shared by every sampler, compiled whole: t = 1 → 0, Eq. 4, then optionally Eq. 5.

    As `vdm_ref.samplers.reverse_process`, except: noise / corrector_noise may be keys (module
    docstring); replace_fn(z_s, z_t, λ_s, λ_t, i) receives a traced step index i and is static
    (a new function object compiles anew); `progress`, `progress_every` (extra, keyword-only) as
    in the module docstring. Returns x̂ at the last grid point before t = 0 (float32).
    """
    z, logsnrs, steps = _check_grid(z, logsnrs)
    noise = _check_source("noise", noise, steps - 1, z)
    if corrector_noise is not None:
        corrector_noise = _check_source("corrector_noise", corrector_noise, steps - 1, z)
    if update_mask is not None:
        update_mask = _float32(update_mask)
    return _run(_compiled_loop, progress, progress_every, denoise_fn, z, logsnrs, noise,
                corrector_noise, _float32(gamma), _float32(delta), replace_fn, update_mask)


def sample_ancestral(denoise_fn, z, logsnrs, noise, *, gamma=0.0, progress=None, progress_every=1):
    """The ancestral sampler: Eq. 4 on the uniform grid from t = 1 to 0, x̂ at the last step.

    One compiled program per denoiser structure and shapes; γ is traced (no recompile when it
    changes). noise: [steps − 1, B, ...] draws or a `jax.random` key (draw i =
    normal(fold_in(key, i)); `noise_from_key` gives the reference the same draws).
    Network evaluations: steps. Returns x̂ [B, ...], float32.
    """
    return reverse_process(denoise_fn, z, logsnrs, noise, gamma=gamma, progress=progress,
                           progress_every=progress_every)


def sample_pc(denoise_fn, z, logsnrs, noise, corrector_noise, *, gamma=0.0, delta=LANGEVIN_DELTA,
              progress=None, progress_every=1):
    """The predictor-corrector sampler: Eq. 4 then one Langevin correction (Eq. 5) at each z_s.

    noise, corrector_noise: [steps − 1, B, ...] draws or `jax.random` keys (use two different
    keys). γ and δ are traced. Network evaluations: 2 (steps − 1) + 1. Returns x̂, float32.
    """
    return reverse_process(denoise_fn, z, logsnrs, noise, corrector_noise, gamma=gamma, delta=delta,
                           progress=progress, progress_every=progress_every)
