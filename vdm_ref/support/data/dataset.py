"""The common dataset interface that training uses (backend-free NumPy).

A `Dataset` is an indexable collection of clips `[T, H, W, C]` (float32 in [-1, 1]) with
optional per-clip class labels and captions. Training draws indices, asks for `batch(indices,
rng)` (augmentation drawn from `rng`), and looks up `labels[indices]` / `captions[i]`. Joint
image-video batches (Sec. 4.3.1) use `frame(i, t)` to fetch single frames of other clips.
"""

from __future__ import annotations

__mirror__ = False

import abc

import numpy as np


class Dataset(abc.ABC):
    """Base class: subclasses implement `__len__` and `clip`, and may override `frame`/`augment`.

    **Attributes** (set by subclasses):
    - `num_frames`, `resolution`, `channels`: every clip is `[num_frames, resolution, resolution, channels]`.
    - `labels`: int64 `[N]` class labels, or None.
    - `num_classes`: number of classes, or None.
    - `captions`: list of N strings, or None ("" means no caption for that clip).
    """

    num_frames: int
    resolution: int
    channels: int
    labels: np.ndarray | None = None
    num_classes: int | None = None
    captions: list[str] | None = None

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of clips."""

    @abc.abstractmethod
    def clip(self, i: int) -> np.ndarray:
        """Clip i, float32 `[T, H, W, C]` in [-1, 1] (no augmentation)."""

    def frame(self, i: int, t: int) -> np.ndarray:
        """Frame t of clip i, float32 `[H, W, C]` in [-1, 1]."""
        return self.clip(i)[t]

    def augment(self, video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random augmentation of one clip `[T, H, W, C]` (or one frame as `[1, H, W, C]`); identity here."""
        return video

    @property
    def video_ids(self) -> np.ndarray:
        """int `[N]`: the source video of each clip (clips of one video share an id); default: all distinct."""
        return np.arange(len(self))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """`(T, H, W, C)` of one clip."""
        return (self.num_frames, self.resolution, self.resolution, self.channels)

    def check_index(self, i) -> int:
        """i as a Python int, or IndexError naming the valid range."""
        n = len(self)
        i = int(i)
        if not 0 <= i < n:
            raise IndexError(f"clip index {i} out of range for a dataset of {n} clips")
        return i

    def batch(self, indices, rng: np.random.Generator | None = None) -> np.ndarray:
        """Clips `indices` stacked into float32 `[B, T, H, W, C]`; augmented with `rng` if given."""
        clips = [self.clip(self.check_index(i)) for i in np.asarray(indices).reshape(-1)]
        if rng is not None:
            clips = [self.augment(c, rng) for c in clips]
        if not clips:
            return np.zeros((0,) + self.shape, np.float32)
        return np.stack(clips).astype(np.float32, copy=False)

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """batch_size clip indices drawn uniformly with replacement."""
        return rng.integers(0, len(self), size=int(batch_size))


def flip_left_right(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror a clip `[..., H, W, C]` along W with probability 1/2 (one coin per call)."""
    return video[..., ::-1, :] if rng.random() < 0.5 else video


class ArrayDataset(Dataset):
    """Clips held in memory.

    **Arguments:**
    - `videos`: `[N, T, H, W, C]` in [-1, 1] (H == W).
    - `labels`: optional int `[N]`; `num_classes` defaults to max + 1.
    - `captions`: optional list of N strings.
    - `flip`: left-right flip augmentation in `batch(..., rng)`.
    """

    def __init__(self, videos, labels=None, captions=None, *, num_classes=None, flip: bool = False):
        videos = np.asarray(videos, np.float32)
        if videos.ndim != 5 or videos.shape[2] != videos.shape[3]:
            raise ValueError(f"videos must be [N, T, H, W, C] with H == W, got shape {videos.shape}")
        n = videos.shape[0]
        self.videos = videos
        self.num_frames, self.resolution, _, self.channels = videos.shape[1:]
        if labels is not None:
            labels = np.asarray(labels, np.int64)
            if labels.shape != (n,):
                raise ValueError(f"labels must be [N] = [{n}], got shape {labels.shape}")
            num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        self.labels, self.num_classes = labels, num_classes
        if captions is not None:
            captions = [str(c) for c in captions]
            if len(captions) != n:
                raise ValueError(f"need one caption per video: {n} videos, {len(captions)} captions")
        self.captions = captions
        self.flip = flip

    def __len__(self) -> int:
        return int(self.videos.shape[0])

    def clip(self, i: int) -> np.ndarray:
        return self.videos[self.check_index(i)]

    def augment(self, video, rng):
        return flip_left_right(video, rng) if self.flip else video
