"""FVD and Inception Score with the real I3D Kinetics-400 network (Sec. 4.2, 4.3), in JAX.

The metric maths is the reference's (`vdm_ref.metrics`), re-exported: it is generic over the
array namespace and right under `jax.jit`. What this module adds is the feature network:

- `i3d_embeddings(videos)` -> `I3DOutputs(logits [N, 400], features [N, 1024])`: videos
  `[N, T, H, W, 3]` in [-1, 1], T ≥ 9, each frame resized to 224x224 (bilinear, antialiased;
  `resize="tf1"` for the original FVD code's TF1 resize), through the jit-compiled Equinox I3D (`vdm_fast.i3d`) with DeepMind's weights, `batch_size`
  videos at a time.
- `fvd(videos_a, videos_b)`: the Fréchet distance between Gaussians fitted to the I3D **logits**
  of the two sets. The logits (time-averaged, 400-d, the output of `RGB/inception_i3d/Mean`) are
  what the original FVD code (Unterthiner et al. [54], `frechet_video_distance.py`) embeds with;
  `layer="features"` uses the 1024-d pre-logit average pool instead (not comparable with
  published FVDs).
- `inception_score(videos, splits=...)`: IS from the I3D logits, mean ± std over splits, as
  reported for Kinetics-600 in Table 3 (the Kinetics-400 I3D, as in the works compared there).

The Fréchet distance of two embedded sets is computed on the host in float64 NumPy (the network
runs in float32): a 400x400 eigendecomposition is cheap, and float32 would cost ~1e-3 relative.

Frame-level FID/IS (Sec. 4.3's FID/IS-avg and -first) need ImageNet Inception-v3, whose weights
no package reachable offline here ships; they are not provided (see docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vdm_ref.metrics import (  # array-API maths, already right under jax.jit
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_w2,
    inception_score_from_logits,
    inception_score_split,
    sqrtm_psd,
)

from .i3d import I3D, I3DOutputs, embed_videos, load_i3d

__all__ = [
    "I3D",
    "LAYERS",
    "I3DOutputs",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "fvd",
    "fvd_from_embeddings",
    "gaussian_w2",
    "i3d_embeddings",
    "inception_score",
    "inception_score_from_logits",
    "inception_score_split",
    "load_i3d",
    "sqrtm_psd",
]

LAYERS = ("logits", "features")


def i3d_embeddings(videos, *, model: I3D | None = None, batch_size: int = 8, resize: str = "antialias",
                   progress: Callable[[int, int], None] | None = None) -> I3DOutputs:
    """I3D logits [N, 400] and pre-logit features [N, 1024] of videos [N, T, H, W, 3] in [-1, 1].

    Frames are resized to 224x224: `resize="antialias"` (bilinear with antialiasing, default) or
    `"tf1"` (TF1 `resize_bilinear`, as the original FVD code); T ≥ 9. `batch_size` bounds memory
    (one compiled shape; the last batch is padded). `model` defaults to `load_i3d()` (DeepMind's
    Kinetics-400 weights, SHA-256-checked). NumPy float32 out. Embed a reference set once and reuse
    it with `fvd_from_embeddings`.
    """
    return embed_videos(videos, model=model, batch_size=batch_size, resize=resize, progress=progress)


def _select(emb: I3DOutputs, layer: str) -> np.ndarray:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    return np.asarray(emb.logits if layer == "logits" else emb.features, np.float64)


def fvd_from_embeddings(emb_a: I3DOutputs, emb_b: I3DOutputs, *, layer: str = "logits") -> float:
    """FVD = d²(N(μ_a, C_a), N(μ_b, C_b)) over the chosen I3D layer of two embedded sets
    (each ≥ 2 videos), in float64."""
    return float(frechet_distance_from_features(_select(emb_a, layer), _select(emb_b, layer)))


def fvd(videos_a, videos_b, *, model: I3D | None = None, batch_size: int = 8, layer: str = "logits",
        resize: str = "antialias", progress: Callable[[int, int], None] | None = None) -> float:
    """Fréchet Video Distance [54] between two sets of videos.

    FVD = ||μ_a − μ_b||² + tr(C_a + C_b − 2 (C_b^{1/2} C_a C_b^{1/2})^{1/2}), with (μ, C) the mean
    and unbiased covariance of the I3D Kinetics-400 logits (400-d, as in the original FVD code) of
    each set.

    **Arguments:**

    - `videos_a`, `videos_b`: `[N, T, H, W, 3]` in [-1, 1], N ≥ 2, T ≥ 9 (16 in the standard
      protocol); resized to 224x224. The two sets may differ in N and in H, W.
    - `model`, `batch_size`, `resize`, `progress`: as in `i3d_embeddings`.
    - `layer`: "logits" (standard) or "features" (1024-d pre-logits).

    **Returns:** the FVD, a Python float (lower is better).
    """
    _select(I3DOutputs(np.zeros((0, 400)), np.zeros((0, 1024))), layer)  # check before long work
    for name, v in (("videos_a", videos_a), ("videos_b", videos_b)):
        if np.shape(v)[0] < 2:
            raise ValueError(f"{name} has {np.shape(v)[0]} video(s); FVD needs at least 2 per set (a covariance)")
    emb_a = i3d_embeddings(videos_a, model=model, batch_size=batch_size, resize=resize, progress=progress)
    emb_b = i3d_embeddings(videos_b, model=model, batch_size=batch_size, resize=resize, progress=progress)
    return fvd_from_embeddings(emb_a, emb_b, layer=layer)


def inception_score(videos, *, splits: int = 1, model: I3D | None = None, batch_size: int = 8,
                    resize: str = "antialias",
                    progress: Callable[[int, int], None] | None = None) -> tuple[float, float]:
    """Inception Score of videos from the I3D Kinetics-400 logits: (mean, std) over `splits`
    consecutive parts of IS = exp(E_x KL(p(y|x) ‖ p(y))), computed in float64.

    videos: `[N, T, H, W, 3]` in [-1, 1], N ≥ splits, T ≥ 9. The paper reports 1 and 10 splits.
    `model`, `batch_size`, `resize`, `progress`: as in `i3d_embeddings`.
    """
    n = np.shape(videos)[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in 1..N={n}, got {splits}")
    logits = i3d_embeddings(videos, model=model, batch_size=batch_size, resize=resize, progress=progress).logits
    mean, std = inception_score_from_logits(np.asarray(logits, np.float64), splits)
    return float(mean), float(std)
