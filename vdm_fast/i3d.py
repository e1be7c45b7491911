"""I3D (Carreira & Zisserman 2017): Inception-v1 inflated to 3D, the network FVD [54] and the
Kinetics Inception Score of Sec. 4.2 are measured with, in Equinox.

Layer for layer the DeepMind Kinetics-400 RGB model (`deepmind/kinetics-i3d`, `i3d.py`), so that
its checkpoint (`vdm_ref.support.i3d_weights`) loads name for name:

    input [B, T, 224, 224, 3] in [-1, 1]
    Conv3d_1a_7x7     7x7x7 conv, 64, stride 2               -> [B, T/2, 112, 112,   64]
    MaxPool3d_2a_3x3  1x3x3 max-pool, stride (1, 2, 2)       -> [B, T/2,  56,  56,   64]
    Conv3d_2b_1x1     1x1x1 conv, 64
    Conv3d_2c_3x3     3x3x3 conv, 192
    MaxPool3d_3a_3x3  1x3x3 max-pool, stride (1, 2, 2)       -> [B, T/2,  28,  28,  192]
    Mixed_3b, Mixed_3c                                       -> [B, T/2,  28,  28,  480]
    MaxPool3d_4a_3x3  3x3x3 max-pool, stride 2               -> [B, T/4,  14,  14,  480]
    Mixed_4b .. Mixed_4f                                     -> [B, T/4,  14,  14,  832]
    MaxPool3d_5a_2x2  2x2x2 max-pool, stride 2               -> [B, T/8,   7,   7,  832]
    Mixed_5b, Mixed_5c                                       -> [B, T/8,   7,   7, 1024]
    AvgPool 2x7x7, stride 1, VALID                           -> [B, T/8-1, 1,   1, 1024]
    Logits/Conv3d_0c_1x1  1x1x1 conv with bias, 400          -> [B, T/8-1, 400]
    mean over time                                           -> logits [B, 400]

(T/k rounds up: "SAME" padding, TensorFlow's convention, which `jax.lax` shares.) Every conv but
the last is Unit3D = conv (no bias) -> BatchNorm (moving statistics, offset β, no scale,
ε = 1e-3) -> ReLU. An Inception block runs four branches on its input and concatenates them
along channels: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; 3x3x3 max-pool (stride 1) -> 1x1x1.

`I3D.__call__` returns `(logits [B, 400], features [B, 1024])`, where `features` is the time
mean of the average-pooled Mixed_5c output: the input of the (linear) logits layer, so
`logits = features @ W + b` exactly. The FVD of the original code uses the logits
(`RGB/inception_i3d/Mean:0`); see `vdm_fast.metrics`.

The module is batched (lax convolutions take `[B, T, H, W, C]`); inference only (no dropout, no
batch-statistics update). `embed_videos` adds the resize to 224x224, the frame-count check and
fixed-size batching so the network compiles once.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from vdm_ref.support.i3d_weights import (
    BATCH_NORM_EPS,
    FEATURE_DIM,
    INCEPTION_BLOCKS,
    INCEPTION_UNITS,
    MIN_FRAMES,
    NUM_CLASSES,
    load_i3d_checkpoint,
)

INPUT_SIZE = 224
_DIMS = ("NTHWC", "THWIO", "NTHWC")


def _channels(v, x):
    """A per-channel vector [C] shaped [1, 1, 1, 1, C] against x [B, T, H, W, C] (explicit rank)."""
    return jnp.reshape(v, (1,) * (x.ndim - 1) + (-1,))


def max_pool_same(x: Float[Array, "b t h w c"], window, strides) -> Float[Array, "b t2 h2 w2 c"]:
    """3D max-pool with TensorFlow 'SAME' padding (padded cells never win: they are -inf)."""
    return jax.lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), jax.lax.max,
                                 (1, *window, 1), (1, *strides, 1), "SAME")


class Unit3D(eqx.Module):
    """conv3d (TF 'SAME', no bias) -> y = (conv - μ) / √(σ² + ε) + β -> ReLU; or, for the logits
    layer, conv3d + bias with neither BatchNorm nor activation.

    kernel [kt, kh, kw, c_in, c_out]; mean, var, offset (β) [c_out] or None; bias [c_out] or None.
    """

    kernel: Float[Array, "kt kh kw ci co"]
    mean: Float[Array, " co"] | None
    var: Float[Array, " co"] | None
    offset: Float[Array, " co"] | None
    bias: Float[Array, " co"] | None
    stride: tuple[int, int, int] = eqx.field(static=True)
    activation: bool = eqx.field(static=True)
    precision: jax.lax.Precision | None = eqx.field(static=True)

    def __call__(self, x: Float[Array, "b t h w ci"]) -> Float[Array, "b t2 h2 w2 co"]:
        y = jax.lax.conv_general_dilated(x, self.kernel.astype(x.dtype), self.stride, "SAME",
                                         dimension_numbers=_DIMS, precision=self.precision)
        if self.mean is not None:  # static: fixed by the checkpoint layout, not by values
            scale = jax.lax.rsqrt(self.var + BATCH_NORM_EPS)
            y = y * _channels(scale.astype(y.dtype), y) + _channels((self.offset - self.mean * scale).astype(y.dtype), y)
        if self.bias is not None:
            y = y + _channels(self.bias.astype(y.dtype), y)
        return jax.nn.relu(y) if self.activation else y

    @classmethod
    def from_checkpoint(cls, params: dict, stats: dict | None, stride=(1, 1, 1), *, precision=None) -> Unit3D:
        """From one unit of the checkpoint: params {"Conv_0": {"kernel"[, "bias"]}[, "BatchNorm_0":
        {"bias"}]}, stats {"BatchNorm_0": {"mean", "var"}} (moving statistics) or None."""
        conv = params["Conv_0"]
        batch_norm = "BatchNorm_0" in params
        return cls(
            kernel=jnp.asarray(conv["kernel"], jnp.float32),
            mean=jnp.asarray(stats["BatchNorm_0"]["mean"], jnp.float32).reshape(-1) if batch_norm else None,
            var=jnp.asarray(stats["BatchNorm_0"]["var"], jnp.float32).reshape(-1) if batch_norm else None,
            offset=jnp.asarray(params["BatchNorm_0"]["bias"], jnp.float32) if batch_norm else None,
            bias=jnp.asarray(conv["bias"], jnp.float32) if "bias" in conv else None,
            stride=tuple(stride), activation=batch_norm, precision=precision,
        )

    def to_checkpoint(self) -> tuple[dict, dict | None]:
        """Inverse of `from_checkpoint`: (params, stats) in the checkpoint's layout, NumPy."""
        conv = {"kernel": np.asarray(self.kernel)}
        if self.bias is not None:
            conv["bias"] = np.asarray(self.bias)
        params = {"Conv_0": conv}
        if self.mean is None:
            return params, None
        params["BatchNorm_0"] = {"bias": np.asarray(self.offset)}
        c = self.mean.shape[0]
        stats = {"BatchNorm_0": {"mean": np.asarray(self.mean).reshape(1, 1, 1, 1, c),
                                 "var": np.asarray(self.var).reshape(1, 1, 1, 1, c)}}
        return params, stats


class InceptionBlock(eqx.Module):
    """Inflated Inception module: concat[b0(x), b1(x), b2(x), b3(x)] along channels, with
    b0 = 1x1x1; b1 = 1x1x1 -> 3x3x3; b2 = 1x1x1 -> 3x3x3; b3 = maxpool 3x3x3 (stride 1) -> 1x1x1."""

    units: tuple[Unit3D, ...]  # in INCEPTION_UNITS order

    def __call__(self, x: Float[Array, "b t h w ci"]) -> Float[Array, "b t h w co"]:
        u = self.units
        b0 = u[0](x)
        b1 = u[2](u[1](x))
        b2 = u[4](u[3](x))
        b3 = u[5](max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


def _unit_paths() -> list[tuple[str, ...]]:
    """Key paths of every unit in the checkpoint, in network order. Flax stored names with a
    slash as one key: ("Mixed_3b", "Branch_1/Conv3d_0b_3x3"), ("Logits/Conv3d_0c_1x1",)."""
    paths = [("Conv3d_1a_7x7",), ("Conv3d_2b_1x1",), ("Conv3d_2c_3x3",)]
    paths += [(block, name) for block, _ in INCEPTION_BLOCKS for name, _ in INCEPTION_UNITS]
    return paths + [("Logits/Conv3d_0c_1x1",)]


def _get(tree: dict, path: tuple[str, ...]):
    for k in path:
        tree = tree[k]
    return tree


class I3D(eqx.Module):
    """The I3D Kinetics-400 network (see the module docstring for the layer table).

    `I3D.from_checkpoint(load_i3d_checkpoint())` builds it; `__call__(x)` with x
    `[B, T, 224, 224, 3]` in [-1, 1], T ≥ 9, returns `(logits [B, 400], features [B, 1024])`.
    """

    conv3d_1a_7x7: Unit3D
    conv3d_2b_1x1: Unit3D
    conv3d_2c_3x3: Unit3D
    mixed: tuple[InceptionBlock, ...]  # Mixed_3b, 3c, 4b, 4c, 4d, 4e, 4f, 5b, 5c
    logits: Unit3D

    def __call__(self, x: Float[Array, "b t 224 224 3"]) -> tuple[Float[Array, "b 400"], Float[Array, "b 1024"]]:
        """(logits [B, 400], features [B, 1024]) of x [B, T, 224, 224, 3] in [-1, 1], T ≥ 9."""
        e = self.endpoints(x)
        return e["Logits"], e["Features"]

    def endpoints(self, x: Float[Array, "b t 224 224 3"]) -> dict[str, Array]:
        """Every endpoint of DeepMind's i3d.py by name ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", ...,
        "Mixed_5c", "Logits" [B, 400]), plus "Features" [B, 1024], the time mean of the 2x7x7
        average-pooled Mixed_5c: the input of the linear logits layer."""
        if x.ndim != 5 or x.shape[-1] != 3 or x.shape[1] < MIN_FRAMES:
            raise ValueError(f"I3D takes [B, T, H, W, 3] with T >= {MIN_FRAMES}, got shape {x.shape}")
        e = {}
        e["Conv3d_1a_7x7"] = net = self.conv3d_1a_7x7(x)
        e["MaxPool3d_2a_3x3"] = net = max_pool_same(net, (1, 3, 3), (1, 2, 2))
        e["Conv3d_2b_1x1"] = net = self.conv3d_2b_1x1(net)
        e["Conv3d_2c_3x3"] = net = self.conv3d_2c_3x3(net)
        e["MaxPool3d_3a_3x3"] = net = max_pool_same(net, (1, 3, 3), (1, 2, 2))
        for (name, _), block in zip(INCEPTION_BLOCKS, self.mixed):
            if name == "Mixed_4b":
                e["MaxPool3d_4a_3x3"] = net = max_pool_same(net, (3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                e["MaxPool3d_5a_2x2"] = net = max_pool_same(net, (2, 2, 2), (2, 2, 2))
            e[name] = net = block(net)
        # Logits: 2x7x7 VALID average pool, 1x1x1 conv + bias, squeeze space, mean over time.
        pooled = jax.lax.reduce_window(net, jnp.array(0, net.dtype), jax.lax.add,
                                       (1, 2, 7, 7, 1), (1, 1, 1, 1, 1), "VALID") / (2 * 7 * 7)
        e["Logits"] = jnp.mean(self.logits(pooled)[:, :, 0, 0, :], axis=1)
        e["Features"] = jnp.mean(pooled[:, :, 0, 0, :], axis=1)
        return e

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, *, precision=jax.lax.Precision.HIGHEST) -> I3D:
        """Build from `vdm_ref.support.i3d_weights.load_i3d_checkpoint()`'s dict (names as in DeepMind's
        i3d.py). `precision` goes to every convolution: HIGHEST keeps float32 on GPUs that would
        otherwise use TF32 (no effect on CPU)."""
        params, stats = checkpoint["params"], checkpoint["batch_stats"]
        units = []
        for path in _unit_paths():
            up = _get(params, path)
            us = _get(stats, path) if "BatchNorm_0" in up else None
            stride = (2, 2, 2) if path == ("Conv3d_1a_7x7",) else (1, 1, 1)
            units.append(Unit3D.from_checkpoint(up, us, stride, precision=precision))
        n = len(INCEPTION_UNITS)
        mixed = tuple(InceptionBlock(tuple(units[3 + i * n: 3 + (i + 1) * n])) for i in range(len(INCEPTION_BLOCKS)))
        model = cls(units[0], units[1], units[2], mixed, units[-1])
        model._check_layout()
        return model

    def _check_layout(self):
        """Every kernel has the shape of DeepMind's I3D (so a wrong checkpoint fails here, loudly)."""
        expect = [(7, 7, 7, 3, 64), (1, 1, 1, 64, 64), (3, 3, 3, 64, 192)]
        c_in = 192
        for _, ch in INCEPTION_BLOCKS:
            ins = (c_in, c_in, ch[1], c_in, ch[3], c_in)
            for (name, i), ci in zip(INCEPTION_UNITS, ins):
                k = 3 if name.endswith("3x3") else 1
                expect.append((k, k, k, ci, ch[i]))
            c_in = ch[0] + ch[2] + ch[4] + ch[5]
        expect.append((1, 1, 1, FEATURE_DIM, NUM_CLASSES))
        for path, u, shape in zip(_unit_paths(), self.units(), expect):
            if tuple(u.kernel.shape) != shape:
                raise ValueError(f"I3D checkpoint: {'/'.join(path)} kernel has shape "
                                 f"{tuple(u.kernel.shape)}, expected {shape}")

    def units(self) -> list[Unit3D]:
        """Every Unit3D in network order (the order of the checkpoint's key paths)."""
        return [self.conv3d_1a_7x7, self.conv3d_2b_1x1, self.conv3d_2c_3x3,
                *(u for m in self.mixed for u in m.units), self.logits]

    def to_checkpoint(self) -> dict:
        """Inverse of `from_checkpoint`: the checkpoint's nested dict of NumPy arrays."""
        params, stats = {}, {}
        for path, u in zip(_unit_paths(), self.units()):
            up, us = u.to_checkpoint()
            *head, last = path
            tp = params
            for k in head:
                tp = tp.setdefault(k, {})
            tp[last] = up
            if us is not None:
                ts = stats
                for k in head:
                    ts = ts.setdefault(k, {})
                ts[last] = us
        return {"params": params, "batch_stats": stats}


_MODEL_CACHE: dict = {}


def load_i3d(path=None, *, precision=jax.lax.Precision.HIGHEST) -> I3D:
    """The I3D Kinetics-400 network with DeepMind's weights (SHA-256-checked; cached per path).

    **Raises:** `vdm_ref.support.i3d_weights.I3DWeightsError` naming the install command if the weights
    are missing or altered.
    """
    key = (None if path is None else str(path), precision)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = I3D.from_checkpoint(load_i3d_checkpoint(path), precision=precision)
    return _MODEL_CACHE[key]


RESIZE_METHODS = ("antialias", "tf1")


def tf1_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of TF1 `tf.image.resize_bilinear` (align_corners=False, legacy
    half_pixel_centers=False), the resize of the original FVD code: output i samples the input at
    x = i · n_in / n_out (no half-pixel offset), linearly between floor(x) and min(ceil(x), n_in − 1)."""
    x = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(np.ceil(x).astype(np.int64), n_in - 1)
    frac = x - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def resize_frames(videos: Float[Array, "b t h w 3"], size: int = INPUT_SIZE, *,
                  method: str = "antialias") -> Float[Array, "b t size size 3"]:
    """Resize every frame to size x size, bilinearly. Values stay in the input's range (convex
    weights).

    - "antialias" (default): `jax.image.resize(..., "bilinear", antialias=True)`, half-pixel
      centres; a downscale widens the kernel so it averages rather than aliases; an upscale
      (e.g. 64 -> 224) is plain bilinear.
    - "tf1": TF1's legacy `resize_bilinear` (`tf1_bilinear_matrix`), as in the original FVD
      code: no antialiasing and a grid shifted by half an input pixel. Use it to match that code.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}")
    b, t, h, w, c = videos.shape
    if (h, w) == (size, size):
        return videos
    if method == "antialias":
        return jax.image.resize(videos, (b, t, size, size, c), "bilinear", antialias=True)
    wy = jnp.asarray(tf1_bilinear_matrix(h, size), videos.dtype)
    wx = jnp.asarray(tf1_bilinear_matrix(w, size), videos.dtype)
    hp = jax.lax.Precision.HIGHEST
    rows = jnp.einsum("oh,bthwc->btowc", wy, videos, precision=hp)
    return jnp.einsum("pw,btowc->btopc", wx, rows, precision=hp)


@eqx.filter_jit
def _forward(model: I3D, videos, size: int, method: str):
    return model(resize_frames(videos, size, method=method))


class I3DOutputs(NamedTuple):
    """I3D outputs for N videos (NumPy float32): logits [N, 400] and pre-logit features [N, 1024]."""

    logits: np.ndarray
    features: np.ndarray


def check_videos(videos, name: str = "videos") -> np.ndarray:
    """Host-side boundary check: [N, T, H, W, 3], T ≥ 9, finite values in [-1, 1] (FVD's own
    assertion allows 1e-3 slack; so does this). Returns float32 NumPy."""
    v = np.asarray(videos)
    if v.ndim != 5 or v.shape[-1] != 3:
        raise ValueError(f"{name} must be [N, T, H, W, 3] (RGB, channels last), got shape {v.shape}")
    if v.shape[1] < MIN_FRAMES:
        raise ValueError(f"{name} have {v.shape[1]} frames; I3D needs at least {MIN_FRAMES} "
                         f"(its last 2x7x7 VALID average pool needs 2 time steps after 8x downsampling)")
    if v.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {v.shape})")
    v = v.astype(np.float32, copy=False)
    lo, hi = float(np.min(v)), float(np.max(v))
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= -1.001 and hi <= 1.001):
        raise ValueError(f"{name} must lie in [-1, 1] (the model range, which I3D expects), got [{lo}, {hi}]")
    return v


def embed_videos(videos, *, model: I3D | None = None, batch_size: int = 8, size: int = INPUT_SIZE,
                 resize: str = "antialias", progress=None) -> I3DOutputs:
    """I3D logits and pre-logit features of N videos, `batch_size` at a time.

    **Arguments:**

    - `videos`: `[N, T, H, W, 3]` in [-1, 1], T ≥ 9 (NumPy or JAX; any H, W).
    - `model`: an `I3D`; default `load_i3d()`.
    - `batch_size`: videos per compiled call; bounds memory (about 0.2 GB per 16-frame clip in
      float32 on CPU). The last batch is padded to the same size, so the network compiles once.
    - `size`, `resize`: the resize (`resize_frames`: "antialias" or "tf1"); 224 is what I3D
      was trained on.
    - `progress`: optional callable(n_done, n_total), e.g. to drive a progress bar.

    **Returns:** `I3DOutputs(logits [N, 400], features [N, 1024])`, NumPy float32.
    """
    v = check_videos(videos)
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = load_i3d() if model is None else model
    n = v.shape[0]
    bs = min(batch_size, n)
    logits, feats = [], []
    for start in range(0, n, bs):
        chunk = v[start:start + bs]
        pad = bs - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)], axis=0)
        lo, fe = _forward(model, jnp.asarray(chunk, jnp.float32), size, resize)
        logits.append(np.asarray(lo)[:bs - pad])
        feats.append(np.asarray(fe)[:bs - pad])
        if progress is not None:
            progress(min(start + bs, n), n)
    return I3DOutputs(np.concatenate(logits), np.concatenate(feats))
