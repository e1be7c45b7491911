"""The ε / v / x parameterisations of the denoiser and their conversions (Sec. 2; [42] for v).

With z = α x + σ ε and α² + σ² = 1:
    x = (z − σ ε)/α,  ε = (z − α x)/σ,  v = α ε − σ x,  x = α z − σ v,  ε = σ z + α v.
Shapes: z, x, ε, v are [B, ...]; logsnr is [B].
"""

from ._array import per_example
from .schedule import alpha_sigma

TARGETS = ("eps", "v", "x")


def x_from_eps(z, eps, logsnr):
    """x̂ = (z − σ ε̂)/α  (the ε-prediction parameterisation of Sec. 2)."""
    alpha, sigma = alpha_sigma(logsnr)
    return (z - per_example(sigma, z) * eps) / per_example(alpha, z)


def eps_from_x(z, x, logsnr):
    """ε̂ = (z − α x̂)/σ  (ε_θ(z_t) = (z_t − x̂_θ(z_t))/σ_t in Eq. 6 with the α the paper drops)."""
    alpha, sigma = alpha_sigma(logsnr)
    return (z - per_example(alpha, z) * x) / per_example(sigma, z)


def v_from_x_eps(x, eps, logsnr):
    """v = α ε − σ x  (the v-prediction target [42])."""
    alpha, sigma = alpha_sigma(logsnr)
    return per_example(alpha, x) * eps - per_example(sigma, x) * x


def x_from_v(z, v, logsnr):
    """x̂ = α z − σ v̂."""
    alpha, sigma = alpha_sigma(logsnr)
    return per_example(alpha, z) * z - per_example(sigma, z) * v


def eps_from_v(z, v, logsnr):
    """ε̂ = σ z + α v̂."""
    alpha, sigma = alpha_sigma(logsnr)
    return per_example(sigma, z) * z + per_example(alpha, z) * v


def _check_target(target):
    if target not in TARGETS:
        raise ValueError(f"prediction target must be one of {TARGETS}, got {target!r}")


def x_from_prediction(z, prediction, logsnr, target):
    """x̂ from a network output of the given parameterisation ('eps', 'v' or 'x')."""
    _check_target(target)
    if target == "eps":
        return x_from_eps(z, prediction, logsnr)
    if target == "v":
        return x_from_v(z, prediction, logsnr)
    return prediction


def eps_from_prediction(z, prediction, logsnr, target):
    """ε̂ from a network output of the given parameterisation ('eps', 'v' or 'x')."""
    _check_target(target)
    if target == "eps":
        return prediction
    if target == "v":
        return eps_from_v(z, prediction, logsnr)
    return eps_from_x(z, prediction, logsnr)


def target_from_x_eps(x, eps, logsnr, target):
    """The regression target of Eq. 2 in the chosen parameterisation: ε, v = α ε − σ x, or x."""
    _check_target(target)
    if target == "eps":
        return eps
    if target == "v":
        return v_from_x_eps(x, eps, logsnr)
    return x
