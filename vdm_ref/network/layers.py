"""Elementary layers of the 3D U-Net (Sec. 3): dense / 1x1, space-only 1x3x3 convolution,
per-frame GroupNorm, SiLU, dropout, spatial down/upsampling by 2.

Activations are channels last, `[B, T, H, W, C]`. Each layer is a pure function of a small
parameter dict (documented per function) and its input; the namespace comes from the input.
Nothing here mixes frames: convolutions are 1x3x3 (the frame axis is a batch axis) and
GroupNorm statistics are taken per frame, so frames interact only in temporal attention.
"""

import numpy as np

from .._array import namespace, sigmoid


def per_channel(v, x):
    """Broadcast a per-channel vector v: [C] against x: [..., C] (reshape to [1, ..., 1, C])."""
    xp = namespace(v)
    return xp.reshape(v, (1,) * (x.ndim - 1) + (v.shape[0],))


def dense(params, x):
    """y = x W + b over the last axis (also the 1x1 convolution of a channels-last video).

    params: {"w": [Cin, Cout], "b": [Cout]} ("b" optional: absent means no bias);
    x: [..., Cin]. Returns [..., Cout].
    """
    y = x @ params["w"]
    if "b" in params:
        y = y + per_channel(params["b"], y)
    return y


def _pad_hw(x):
    """Zero-pad H and W of [B, T, H, W, C] by one on each side (no `pad` in the array API)."""
    xp = namespace(x)
    b, t, h, w, c = x.shape
    zrow = xp.zeros((b, t, 1, w, c), dtype=x.dtype)
    x = xp.concat([zrow, x, zrow], axis=2)
    zcol = xp.zeros((b, t, h + 2, 1, c), dtype=x.dtype)
    return xp.concat([zcol, x, zcol], axis=3)


def conv_1x3x3(params, x, *, stride=1):
    """Space-only 3D convolution (Sec. 3: each 3x3 conv becomes 1x3x3), zero padding 1.

    y[b,t,i,j] = b + Σ_{dy,dx ∈ {0,1,2}} x̄[b, t, s·i+dy, s·j+dx] W[0, dy, dx]
    with x̄ the zero-padded input and s the spatial stride (1, or 2 to downsample).

    params: {"w": [1, 3, 3, Cin, Cout] (THWIO), "b": [Cout]}; x: [B, T, H, W, Cin].
    Returns [B, T, H/s, W/s, Cout].
    """
    xp = namespace(x)
    w = params["w"]
    _, _, h, wd, cin = x.shape
    xpad = _pad_hw(x)
    # im2col: the nine shifted views side by side on the channel axis, in (dy, dx, c) order,
    # contracted with W reshaped to [9·Cin, Cout] (the same (dy, dx, c) order).
    taps = [xpad[:, :, dy:dy + h:stride, dx:dx + wd:stride, :] for dy in range(3) for dx in range(3)]
    y = xp.concat(taps, axis=-1) @ xp.reshape(w, (9 * cin, w.shape[-1]))
    return y + per_channel(params["b"], y)


def group_norm(params, x, *, groups, eps=1e-6):
    """GroupNorm per frame: (x − mean) / sqrt(var + ε) · scale + offset.

    Mean and variance run over (H, W, the C/groups channels of a group) for each example,
    frame and group, so an image frame of a joint batch is normalised on its own.

    params: {"scale": [C], "offset": [C]}; x: [B, T, H, W, C]. Returns x's shape.
    """
    xp = namespace(x)
    b, t, h, w, c = x.shape
    xg = xp.reshape(x, (b, t, h, w, groups, c // groups))
    mean = xp.mean(xg, axis=(2, 3, 5), keepdims=True)
    var = xp.mean((xg - mean) ** 2, axis=(2, 3, 5), keepdims=True)
    xn = xp.reshape((xg - mean) / xp.sqrt(var + eps), (b, t, h, w, c))
    return xn * per_channel(params["scale"], xn) + per_channel(params["offset"], xn)


def silu(x):
    """SiLU(x) = x · sigmoid(x)."""
    return x * sigmoid(x)


def dropout_keep(rng, rate, shape):
    """The Bernoulli(1 − rate) keep mask of dropout, drawn from `rng`.

    rng: a `numpy.random.Generator`, or a JAX PRNG key (drawn with
    `jax.random.bernoulli(rng, float32(1 − rate), shape)`, exactly as vdm_fast draws it, so
    both backends consume the same draws). Returns a bool array of `shape`.
    """
    if isinstance(rng, np.random.Generator):
        return rng.random(shape) < (1.0 - rate)
    import jax  # a JAX key: the same draw as vdm_fast

    return jax.random.bernoulli(rng, np.float32(1.0 - rate), shape)


def dropout(x, rate, rng=None):
    """Inverted dropout: x · m / (1 − rate), m ~ Bernoulli(1 − rate) elementwise.

    rng None (evaluation) or rate 0 returns x unchanged; otherwise see `dropout_keep`.
    """
    if rng is None or rate == 0.0:
        return x
    xp = namespace(x)
    keep = xp.asarray(dropout_keep(rng, rate, x.shape))
    return xp.where(keep, x / (1.0 - rate), xp.zeros_like(x))


def downsample(params, x):
    """Spatial downsampling by 2: a 1x3x3 convolution with stride (1, 2, 2).

    params: as `conv_1x3x3` with Cin = Cout; x: [B, T, H, W, C] -> [B, T, H/2, W/2, C].
    """
    return conv_1x3x3(params, x, stride=2)


def upsample(params, x):
    """Spatial upsampling by 2: nearest-neighbour repeat of each pixel to 2x2, then 1x3x3 conv.

    params: as `conv_1x3x3` with Cin = Cout; x: [B, T, H, W, C] -> [B, T, 2H, 2W, C].
    """
    xp = namespace(x)
    b, t, h, w, c = x.shape
    x = xp.broadcast_to(xp.reshape(x, (b, t, h, 1, w, 1, c)), (b, t, h, 2, w, 2, c))
    return conv_1x3x3(params, xp.reshape(x, (b, t, 2 * h, 2 * w, c)))


def space_to_depth(x, p):
    """Each p x p pixel patch becomes one position: [B, T, H, W, C] -> [B, T, H/p, W/p, p²C].

    y[b, t, i, j, (dy·p + dx)·C + c] = x[b, t, i·p + dy, j·p + dx, c]. p = 1 is the identity.
    """
    if p == 1:
        return x
    xp = namespace(x)
    b, t, h, w, c = x.shape
    x = xp.reshape(x, (b, t, h // p, p, w // p, p, c))
    x = xp.permute_dims(x, (0, 1, 2, 4, 3, 5, 6))
    return xp.reshape(x, (b, t, h // p, w // p, p * p * c))


def depth_to_space(x, p):
    """The inverse of `space_to_depth`: [B, T, H, W, p²C] -> [B, T, pH, pW, C]."""
    if p == 1:
        return x
    xp = namespace(x)
    b, t, h, w, pc = x.shape
    c = pc // (p * p)
    x = xp.reshape(x, (b, t, h, w, p, p, c))
    x = xp.permute_dims(x, (0, 1, 2, 4, 3, 5, 6))
    return xp.reshape(x, (b, t, h * p, w * p, c))
