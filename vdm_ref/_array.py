"""Array-namespace helpers shared by every reference module (private).

The reference code is generic over the array API: NumPy (float64, the test oracle) by default,
`jax.numpy` when gradients or jit are needed. Every function starts with `xp = namespace(x)`.
"""

from array_api_compat import array_namespace


def namespace(*arrays):
    """The array namespace of the given arrays (`numpy` or `jax.numpy` in practice).

    Python scalars are ignored; with no array at all, NumPy's namespace is used.
    """
    arrays = [a for a in arrays if not isinstance(a, (bool, int, float, complex))]
    if not arrays:
        import numpy

        return array_namespace(numpy.zeros(()))
    return array_namespace(*arrays)


def per_example(v, x):
    """Broadcast a per-example quantity v of shape [B] against x of shape [B, ...].

    Returns v reshaped to [B, 1, ..., 1] with x's rank: the one broadcasting helper used
    everywhere a per-example λ, α or σ multiplies a video.
    """
    xp = namespace(v)
    return xp.reshape(v, (v.shape[0],) + (1,) * (x.ndim - 1))


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + e^{-x}), computed as exp(-logaddexp(0, -x)) (no overflow)."""
    xp = namespace(x)
    return xp.exp(-xp.logaddexp(xp.zeros_like(x), -x))


def log_sigmoid(x):
    """log sigmoid(x) = -log(1 + e^{-x}) = -logaddexp(0, -x)."""
    xp = namespace(x)
    return -xp.logaddexp(xp.zeros_like(x), -x)
