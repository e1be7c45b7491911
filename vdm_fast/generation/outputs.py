"""What a generation command writes for a batch of videos [B, N, H, W, C] in [-1, 1]:

    STEM.mp4 (or .gif)   the videos side by side
    STEM.png             a frame grid: one row per video, one column per frame
    STEM_boundaries.png  the same with the gap before each block boundary in red (when there are any)
    STEM.npz             the videos as float32 ("video"), plus the block boundaries ("boundaries")
    STEM.json            extra results (e.g. --coherence, stage times) and the --caption / --label used
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Video formats, by the suffix of --out.
VIDEO_FORMATS = ("mp4", "gif")


def beside(stem: Path, ending: str) -> Path:
    """STEM + ending: `stem.name` kept whole (a stem "run0.5" gives "run0.5.png", where
    `with_suffix` would write "run0.png" and overwrite another run's file)."""
    return stem.parent / (stem.name + ending)


def output_paths(stem: Path, fmt: str) -> list[Path]:
    """Every file `write_outputs` may write for `stem`."""
    return [beside(stem, f".{fmt}"), beside(stem, ".png"), beside(stem, "_boundaries.png"),
            beside(stem, ".npz"), beside(stem, ".json")]


def write_outputs(stem: Path, fmt: str, video: np.ndarray, *, fps: float, boundaries=(),
                  extra: dict | None = None) -> list[Path]:
    """Write the files of the module docstring; returns the paths written."""
    from vdm_ref.support.data import write_frame_grid, write_video

    stem.parent.mkdir(parents=True, exist_ok=True)
    boundaries = [int(b) for b in boundaries]
    written = [write_video(beside(stem, f".{fmt}"), tile_videos(video), fps=fps),
               write_frame_grid(beside(stem, ".png"), video)]
    if boundaries:
        from PIL import Image

        path = beside(stem, "_boundaries.png")
        Image.fromarray(boundary_strip(video, boundaries)).save(path)
        written.append(path)
    np.savez_compressed(beside(stem, ".npz"), video=video.astype(np.float32),
                        boundaries=np.asarray(boundaries, np.int64))
    written.append(beside(stem, ".npz"))
    if extra:
        beside(stem, ".json").write_text(json.dumps(extra, indent=1, sort_keys=True))
        written.append(beside(stem, ".json"))
    return [Path(p) for p in written]


def boundary_strip(video: np.ndarray, boundaries, padding: int = 2) -> np.ndarray:
    """The frame grid of `video` [B, T, H, W, C] as RGB uint8, with the gap before each block
    boundary's first generated frame coloured red (Fig. 4-style strips)."""
    from vdm_ref.support.data import frame_grid
    from vdm_ref.support.data.video_io import as_rgb

    grid = as_rgb(frame_grid(video, padding=padding)).copy()
    w = video.shape[3]
    for b in boundaries:
        x = b * (w + padding)
        grid[:, x : x + padding] = (220, 30, 30)
    return grid


def tile_videos(video: np.ndarray, padding: int = 2) -> np.ndarray:
    """[B, T, H, W, C] -> [T, H, B (W + p) − p, C]: the videos side by side (white gaps)."""
    b, t, h, w, c = video.shape
    out = np.ones((t, h, b * (w + padding) - padding, c), np.float32)
    for i in range(b):
        out[:, :, i * (w + padding) : i * (w + padding) + w] = video[i]
    return out
