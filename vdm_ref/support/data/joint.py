"""Joint image-video batches (Sec. 4.3.1).

"We concatenate random independent image frames to the end of each video sampled from the
dataset, and we mask the attention in the temporal attention blocks to prevent mixing information
across video frames and each individual image frame. We choose these random independent images
from random videos within the same dataset."

A joint batch is `[B, T + N, H, W, C]`: each clip's T frames, then N frames each drawn from a
random *other* video of the dataset (uniform over the clips of the other videos, then uniform
over frames). The frame-kind mask `is_image` `[B, T + N]` is True for the N appended image frames;
the network's temporal attention lets an image frame attend only to itself (and the video frames
only to video frames). All randomness comes from the `numpy.random.Generator` passed in.
"""

from __future__ import annotations

__mirror__ = False

import numpy as np

from .dataset import Dataset


def frame_kind_mask(batch_size: int, num_frames: int, num_image_frames: int) -> np.ndarray:
    """is_image, bool `[B, T + N]`: False for the T video frames, True for the N appended image frames."""
    row = np.concatenate([np.zeros(int(num_frames), bool), np.ones(int(num_image_frames), bool)])
    return np.broadcast_to(row, (int(batch_size), row.shape[0])).copy()


def append_image_frames(videos: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate independent image frames after each clip.

    **Arguments:** `videos` `[B, T, H, W, C]`; `images` `[B, N, H, W, C]`.

    **Returns:** `(batch [B, T + N, H, W, C], is_image bool [B, T + N])`.
    """
    videos, images = np.asarray(videos), np.asarray(images)
    if not (videos.ndim == images.ndim == 5 and videos.shape[0] == images.shape[0]
            and videos.shape[2:] == images.shape[2:]):
        raise ValueError(f"videos [B, T, H, W, C] and images [B, N, H, W, C] must agree on B, H, W, C; "
                         f"got {videos.shape} and {images.shape}")
    batch = np.concatenate([videos, images.astype(videos.dtype, copy=False)], axis=1)
    return batch, frame_kind_mask(videos.shape[0], videos.shape[1], images.shape[1])


def draw_image_sources(video_ids: np.ndarray, indices, num_image_frames: int, num_frames: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Where each appended image frame comes from: int `[B, N, 2]` of (clip index, frame index).

    For clip `indices[b]`, each of the N frames is drawn independently: a clip uniformly among the
    clips whose `video_ids` differ from its own (a different source video), then a frame uniformly.

    **Raises:** `ValueError` if some clip has no clip of another video to draw from.
    """
    video_ids = np.asarray(video_ids)
    indices = np.asarray(indices, np.int64).reshape(-1)
    out = np.zeros((indices.shape[0], int(num_image_frames), 2), np.int64)
    if num_image_frames == 0:
        return out
    for b, i in enumerate(indices):
        others = np.flatnonzero(video_ids != video_ids[i])
        if others.size == 0:
            raise ValueError(f"joint image-video batches draw image frames from other videos, but the "
                             f"dataset has no video other than that of clip {i} ({len(video_ids)} clips)")
        out[b, :, 0] = others[rng.integers(0, others.size, size=int(num_image_frames))]
        out[b, :, 1] = rng.integers(0, int(num_frames), size=int(num_image_frames))
    return out


def joint_batch(dataset: Dataset, indices, num_image_frames: int, rng,
                *, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A joint image-video batch (Sec. 4.3.1).

    **Arguments:**
    - `dataset`: a `Dataset` (clips `[T, H, W, C]`).
    - `indices`: `[B]` clip indices.
    - `num_image_frames`: N independent image frames appended to each clip (0 gives a plain batch).
    - `rng`: `numpy.random.Generator` (or an int seed) for the image-frame draws and augmentation.
    - `augment`: apply `dataset.augment` to each clip and, independently, to each image frame.

    **Returns:** `(batch float32 [B, T + N, H, W, C], is_image bool [B, T + N])`, True = image frame.
    Conditioning (labels, captions) stays that of clip `indices[b]`.
    """
    rng = np.random.default_rng(rng)
    n = int(num_image_frames)
    if n < 0:
        raise ValueError(f"num_image_frames must be >= 0, got {num_image_frames}")
    indices = np.asarray(indices, np.int64).reshape(-1)
    videos = dataset.batch(indices, rng if augment else None)
    sources = draw_image_sources(dataset.video_ids, indices, n, dataset.num_frames, rng)
    images = np.zeros((indices.shape[0], n) + dataset.shape[1:], np.float32)
    for b in range(indices.shape[0]):
        for k in range(n):
            image = dataset.frame(int(sources[b, k, 0]), int(sources[b, k, 1]))
            images[b, k] = dataset.augment(image[None], rng)[0] if augment else image
    return append_image_frames(videos, images)
