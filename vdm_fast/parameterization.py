"""The ε / v / x parameterisations and their conversions (Sec. 2; [42] for v), float32 under jit.

Twin of `vdm_ref.parameterization` (x = (z − σ ε)/α, ε = (z − α x)/σ, v = α ε − σ x,
x = α z − σ v, ε = σ z + α v): inputs cast to float32, reference formulas jitted. The target
name ('eps', 'v' or 'x') is a static argument; a bad one raises the reference's ValueError.
"""

import functools

import jax

from vdm_ref import parameterization as _ref
from vdm_ref.parameterization import TARGETS  # noqa: F401 (re-exported)

from .schedule import _float32


@jax.jit
def x_from_eps(z, eps, logsnr):
    """x̂ = (z − σ ε̂)/α (float32)."""
    return _ref.x_from_eps(*_float32(z, eps, logsnr))


@jax.jit
def eps_from_x(z, x, logsnr):
    """ε̂ = (z − α x̂)/σ (float32)."""
    return _ref.eps_from_x(*_float32(z, x, logsnr))


@jax.jit
def v_from_x_eps(x, eps, logsnr):
    """v = α ε − σ x (float32)."""
    return _ref.v_from_x_eps(*_float32(x, eps, logsnr))


@jax.jit
def x_from_v(z, v, logsnr):
    """x̂ = α z − σ v̂ (float32)."""
    return _ref.x_from_v(*_float32(z, v, logsnr))


@jax.jit
def eps_from_v(z, v, logsnr):
    """ε̂ = σ z + α v̂ (float32)."""
    return _ref.eps_from_v(*_float32(z, v, logsnr))


@functools.partial(jax.jit, static_argnames=("target",))
def x_from_prediction(z, prediction, logsnr, target):
    """x̂ from a network output in the `target` parameterisation ('eps', 'v' or 'x'), float32."""
    return _ref.x_from_prediction(*_float32(z, prediction, logsnr), target)


@functools.partial(jax.jit, static_argnames=("target",))
def eps_from_prediction(z, prediction, logsnr, target):
    """ε̂ from a network output in the `target` parameterisation ('eps', 'v' or 'x'), float32."""
    return _ref.eps_from_prediction(*_float32(z, prediction, logsnr), target)


@functools.partial(jax.jit, static_argnames=("target",))
def target_from_x_eps(x, eps, logsnr, target):
    """The regression target of Eq. 2: ε, v = α ε − σ x, or x (float32)."""
    return _ref.target_from_x_eps(*_float32(x, eps, logsnr), target)
