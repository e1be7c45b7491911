"""A small digit classifier for Moving MNIST frames: a two-layer MLP in NumPy.

    p(y | u) = softmax(W₂ relu(W₁ u + b₁) + b₂),   u = the CROP × CROP crop, flattened, minus 0.5

It reads the crops `tracker.detect_digits` makes (a digit_size² window around a component's
centre of mass, resized to 16×16), so it is trained on MNIST digits put through the same
procedure by `render_digit_crops`: each digit resized to a random size in `SIZES` (as
`MovingMNIST` resizes them), placed with a random sub-window offset of up to ±2 px, with a
second digit intruding into the window from the side in a third of the examples (the overlaps of
multi-digit clips), then cropped around its centre of mass. Training: Adam on the cross-entropy,
from a fixed seed, on the 50 000 `train` digits; accuracy is reported on the 10 000 `test`
digits (`python -m vdm_ref.support.eval.digits` retrains and rewrites `digit_classifier.npz`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tracker import CROP, THRESHOLD, extract_crops

__mirror__ = False

WEIGHTS = Path(__file__).with_name("digit_classifier.npz")
#: Digit sizes (pixels) the classifier is trained on: Moving MNIST renders its 28×28 digits at
#: `digit_size`, which is 28 at 64×64 and smaller for smaller frames.
SIZES = (10, 12, 14, 16, 20, 24, 28)


@dataclass(frozen=True)
class DigitClassifier:
    """The MLP's weights: w1 [CROP², hidden], b1 [hidden], w2 [hidden, 10], b2 [10]; float32."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    test_accuracy: float = float("nan")

    def logits(self, crops) -> np.ndarray:
        """W₂ relu(W₁ u + b₁) + b₂ for crops [N, CROP, CROP] (ink in [0, 1]) -> [N, 10]."""
        u = np.asarray(crops, np.float32).reshape(len(crops), -1) - np.float32(0.5)
        return np.maximum(u @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    def probabilities(self, crops) -> np.ndarray:
        """p(y | u) = softmax(logits) [N, 10]."""
        z = self.logits(crops)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, crops) -> np.ndarray:
        """argmax_y p(y | u) [N] (int64); an empty input gives an empty output."""
        if len(crops) == 0:
            return np.zeros(0, np.int64)
        return np.argmax(self.logits(crops), axis=1).astype(np.int64)

    def save(self, path: str | Path = WEIGHTS) -> Path:
        """Write the weights (float32, a few hundred kB) as .npz."""
        np.savez(path, w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2,
                 test_accuracy=np.float64(self.test_accuracy))
        return Path(path)


def load_digit_classifier(path: str | Path | None = None) -> DigitClassifier:
    """The shipped classifier (`digit_classifier.npz` next to this module), or one at `path`.

    If the shipped file is missing, trains one (about a minute on 2 CPU cores) and saves it there.
    """
    p = WEIGHTS if path is None else Path(path)
    if not p.is_file():
        if path is not None:
            raise FileNotFoundError(f"no digit classifier weights at {p}")
        clf = train_digit_classifier()
        try:
            clf.save(p)
        except OSError:
            pass
        return clf
    with np.load(p) as z:
        return DigitClassifier(z["w1"], z["b1"], z["w2"], z["b2"], float(z["test_accuracy"]))


def render_digit_crops(images: np.ndarray, rng: np.random.Generator, *, sizes=SIZES,
                       jitter: int = 2, intrude: float = 1 / 3) -> np.ndarray:
    """Classifier inputs [N, CROP, CROP] from MNIST digits uint8 [N, 28, 28] (module docstring).

    Each digit is resized to a size s drawn from `sizes`, drawn on an empty canvas at an offset
    of up to ±`jitter` px (and, with probability `intrude`, another digit of the batch at an
    offset of 0.6–0.9 s along a random axis), then cropped around its centre of mass like
    `tracker.extract_crops` does.
    """
    from vdm_ref.support.data.moving_mnist import resize_digit

    n = len(images)
    out = np.empty((n, CROP, CROP), np.float32)
    size_of = rng.choice(np.asarray(sizes), size=n)
    for s in np.unique(size_of):
        idx = np.flatnonzero(size_of == s)
        s = int(s)
        m = 2 * s
        for j in idx:
            canvas = np.zeros((3 * s + 2 * m, 3 * s + 2 * m))
            y0, x0 = s + m + rng.integers(-jitter, jitter + 1, size=2)
            d = resize_digit(images[j], s)
            canvas[y0 : y0 + s, x0 : x0 + s] = d
            if rng.random() < intrude:
                other = resize_digit(images[rng.integers(n)], s)
                off = int(rng.uniform(0.6, 0.9) * s) * rng.choice([-1, 1])
                oy, ox = (y0 + off, x0) if rng.random() < 0.5 else (y0, x0 + off)
                region = canvas[oy : oy + s, ox : ox + s]
                canvas[oy : oy + s, ox : ox + s] = np.maximum(region, other)
            core = d > THRESHOLD  # centre of mass of the digit's ink, as the tracker measures it
            ys, xs = np.nonzero(core if core.any() else d > 0)
            wts = d[ys, xs]
            cy = y0 + (wts * ys).sum() / wts.sum()
            cx = x0 + (wts * xs).sum() / wts.sum()
            out[j] = extract_crops(canvas, np.array([[cy, cx]]), s)[0]
    return out


def _adam(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    state["t"] += 1
    t = state["t"]
    for k in params:
        state["m"][k] = b1 * state["m"][k] + (1 - b1) * grads[k]
        state["v"][k] = b2 * state["v"][k] + (1 - b2) * grads[k] ** 2
        mh = state["m"][k] / (1 - b1**t)
        vh = state["v"][k] / (1 - b2**t)
        params[k] = params[k] - lr * mh / (np.sqrt(vh) + eps)


def train_digit_classifier(*, hidden: int = 256, epochs: int = 12, batch: int = 128,
                           learning_rate: float = 1e-3, seed: int = 0,
                           verbose: bool = False) -> DigitClassifier:
    """Train the MLP on MNIST `train` (crops by `render_digit_crops`), report `test` accuracy.

    Plain NumPy: forward, hand-written backward pass of the cross-entropy, Adam; the learning
    rate decays by cosine to 0. Deterministic for a given seed. About a minute on 2 cores.
    """
    from vdm_ref.support.data import load_mnist

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    train, test = load_mnist("train"), load_mnist("test")
    x = render_digit_crops(train.images, rng).reshape(len(train), -1) - np.float32(0.5)
    y = train.labels
    xt = render_digit_crops(test.images, np.random.default_rng(seed + 1))
    d = x.shape[1]
    params = {
        "w1": (rng.standard_normal((d, hidden)) * np.sqrt(2.0 / d)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.standard_normal((hidden, 10)) * np.sqrt(1.0 / hidden)).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }
    state = {"t": 0, "m": {k: np.zeros_like(v) for k, v in params.items()},
             "v": {k: np.zeros_like(v) for k, v in params.items()}}
    n = len(y)
    total = epochs * (n // batch)
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        for i in range(n // batch):
            idx = order[i * batch : (i + 1) * batch]
            xb, yb = x[idx], y[idx]
            h_pre = xb @ params["w1"] + params["b1"]
            h = np.maximum(h_pre, 0.0)
            z = h @ params["w2"] + params["b2"]
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            g = p
            g[np.arange(len(yb)), yb] -= 1.0
            g /= len(yb)  # ∂(mean cross-entropy)/∂z
            grads = {"w2": h.T @ g, "b2": g.sum(0)}
            gh = (g @ params["w2"].T) * (h_pre > 0)
            grads["w1"] = xb.T @ gh
            grads["b1"] = gh.sum(0)
            lr = learning_rate * 0.5 * (1 + np.cos(np.pi * step / total))
            _adam(params, grads, state, np.float32(lr))
            step += 1
        if verbose:
            clf = DigitClassifier(**params)
            acc = float((clf.predict(xt) == test.labels).mean())
            print(f"epoch {epoch + 1}/{epochs}: test accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)")
    clf = DigitClassifier(**{k: v.astype(np.float32) for k, v in params.items()})
    acc = float((clf.predict(xt) == test.labels).mean())
    return DigitClassifier(clf.w1, clf.b1, clf.w2, clf.b2, acc)


def main() -> None:
    """Retrain the classifier and rewrite `digit_classifier.npz`; print the test accuracy."""
    clf = train_digit_classifier(verbose=True)
    path = clf.save()
    print(f"test accuracy {clf.test_accuracy:.4f} on the 10 000 MNIST test digits; saved {path}")


if __name__ == "__main__":
    main()
