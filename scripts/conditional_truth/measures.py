"""Ground-truth measures for conditional Moving MNIST generation (NumPy).

- `psnr`: 10 log10(peak² / MSE) per video, videos in [-1, 1] (peak-to-peak 2, so peak² = 4).
- `upsample_classical`: bilinear / bicubic (PIL) and pixel-repeat upsampling of each frame.
- `digit_agreement`: does the generated frame show the real frame's digits, where they are, with
  the class the classifier gives the real frame's digit?
- `label_accuracy`: the classifier's labels of a frame's digits against the clip's true digits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vdm_ref.support.eval import detect_digits, load_digit_classifier, match_digits

#: PSNR of identical videos is infinite; MSE is floored here, capping PSNR at 100 dB.
MSE_FLOOR = 1e-10
#: τ in pixels for digit agreement (the same frame, so only drawing jitter moves a centre; the
#: coherence measure's Moving MNIST τ, `sample_quality.JUMP_TOLERANCE`, is used for one scale).
TOLERANCE = 5.0
UPSAMPLERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "pixel repeat": Image.Resampling.NEAREST}


def psnr(x, y, frames=None) -> np.ndarray:
    """PSNR = 10 log10(4 / MSE) of each video of x against y, [B, T, H, W, C] in [-1, 1] -> [B].

    frames: the frame indices the MSE is taken over (default all). MSE is floored at `MSE_FLOOR`.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 5:
        raise ValueError(f"psnr needs two [B, T, H, W, C] arrays of one shape, got {x.shape} and {y.shape}")
    if frames is not None:
        x, y = x[:, list(frames)], y[:, list(frames)]
    mse = np.mean((x - y) ** 2, axis=(1, 2, 3, 4))
    return 10.0 * np.log10(4.0 / np.maximum(mse, MSE_FLOOR))


def upsample_classical(low, factor: int, method: str) -> np.ndarray:
    """Each frame of low [B, T, h, w, C] resized to [B, T, kh, kw, C] by PIL's `method`
    ('bilinear', 'bicubic', 'pixel repeat'), clipped to the data range [-1, 1]."""
    if method not in UPSAMPLERS:
        raise ValueError(f"method={method!r}: expected one of {tuple(UPSAMPLERS)}")
    low = np.asarray(low, np.float32)
    b, t, h, w, c = low.shape
    out = np.empty((b, t, h * factor, w * factor, c), np.float32)
    for i in range(b):
        for f in range(t):
            for ch in range(c):
                im = Image.fromarray(np.ascontiguousarray(low[i, f, :, :, ch]), mode="F")
                out[i, f, :, :, ch] = np.asarray(im.resize((w * factor, h * factor), UPSAMPLERS[method]))
    return np.clip(out, -1.0, 1.0)


def _labelled(videos, digit_size: int, clf):
    """detect_digits over every frame of videos [B, T, ...] and the classifier's label of each digit."""
    v = np.asarray(videos, np.float64)
    dets = detect_digits(v.reshape((-1,) + v.shape[2:]), digit_size)
    crops = [d.crops for d in dets]
    sizes = [len(c) for c in crops]
    labels = clf.predict(np.concatenate(crops)) if sum(sizes) else np.zeros(0, np.int64)
    return dets, np.split(labels, np.cumsum(sizes)[:-1])


def digit_agreement(generated, truth, digit_size: int, *, frames=None, classifier=None,
                    tolerance: float = TOLERANCE) -> np.ndarray:
    """Per video, the mean over frames of  agreed / max(n_truth, n_generated)  (1 if both empty).

    A digit of the real frame is *agreed* if the minimum-distance assignment matches it to a
    digit of the generated frame whose centre is at most `tolerance` px away, both are single
    digits (`DigitDetections.single`), and the classifier gives both the same class. Strict: a
    merged or smeared blob at the right place does not count.

    generated, truth: [B, T, H, W, C] in [-1, 1]; frames: indices scored (default all). -> [B].
    """
    g, x = np.asarray(generated), np.asarray(truth)
    if g.shape != x.shape or g.ndim != 5:
        raise ValueError(f"digit_agreement needs two [B, T, H, W, C] arrays of one shape, got {g.shape} and {x.shape}")
    frames = list(range(g.shape[1])) if frames is None else list(frames)
    g, x = g[:, frames], x[:, frames]
    clf = load_digit_classifier() if classifier is None else classifier
    dg, lg = _labelled(g, digit_size, clf)
    dx, lx = _labelled(x, digit_size, clf)
    scores = np.empty(len(dg))
    for k in range(len(dg)):
        n = max(len(dx[k]), len(dg[k]))
        agreed = sum(1 for i, j in match_digits(dx[k].centres, dg[k].centres)
                     if np.linalg.norm(dx[k].centres[i] - dg[k].centres[j]) <= tolerance
                     and dx[k].single[i] and dg[k].single[j] and lx[k][i] == lg[k][j])
        scores[k] = 1.0 if n == 0 else agreed / n
    return scores.reshape(g.shape[0], len(frames)).mean(axis=1)


def label_accuracy(videos, labels, digit_size: int, *, frames=None, classifier=None) -> np.ndarray:
    """Per video, the mean over frames of  |true ∩ predicted| / max(n_true, n_predicted): the
    classifier's labels of the frame's single digits against the clip's true digit classes.

    videos: [B, T, H, W, C]; labels: int [B, max_digits], -1 padded (`MovingMNISTData.digit_labels`).
    """
    v = np.asarray(videos)
    frames = list(range(v.shape[1])) if frames is None else list(frames)
    v = v[:, frames]
    clf = load_digit_classifier() if classifier is None else classifier
    dets, labs = _labelled(v, digit_size, clf)
    t = len(frames)
    out = np.empty(v.shape[0])
    for i in range(v.shape[0]):
        true = [int(c) for c in np.asarray(labels[i]) if c >= 0]
        per = []
        for f in range(t):
            d, lab = dets[i * t + f], labs[i * t + f]
            pred = [int(c) for c, s in zip(lab, d.single) if s]
            common = sum(min(true.count(c), pred.count(c)) for c in set(true))
            n = max(len(true), len(d))
            per.append(1.0 if n == 0 else common / n)
        out[i] = np.mean(per)
    return out
