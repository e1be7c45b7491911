"""Reading and writing videos (backend-free NumPy).

Reading: MP4 / WebM / MOV / MKV / AVI through `imageio.v3` with the PyAV plugin, GIF through
Pillow, and folders of image sequences (PNG/JPEG/... sorted by name, numbers compared as numbers)
through Pillow. Frames come back as uint8 RGB `[T, H, W, 3]`; `iter_frames` streams them one by
one so a long video never has to be held in memory.

Writing: MP4 (H.264, yuv420p, constant quality), WebM (VP9), GIF (Pillow) and a PNG grid of
frames (one row per video, one column per frame), from uint8 or from model-range float videos
in [-1, 1]. `read_video` / `read_frame_grid` are their inverses (exact for the PNG grid and for
grayscale GIFs, within codec tolerance for MP4).

Every decoding failure is raised as `VideoReadError` naming the file and the reason, so callers
(see `folder.py`) can report and skip it.
"""

from __future__ import annotations

__mirror__ = False

import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageSequence

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class VideoReadError(ValueError):
    """A video (file or image-sequence folder) that could not be decoded: names the path and why."""


# ----------------------------------------------------------------------------------------------
# value conversions


def to_uint8(video) -> np.ndarray:
    """Model range [-1, 1] -> uint8 [0, 255]: round((x + 1) * 127.5), clipped. uint8 passes through."""
    video = np.asarray(video)
    if video.dtype == np.uint8:
        return video
    return np.clip(np.rint((video.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(video) -> np.ndarray:
    """uint8 [0, 255] -> float32 model range [-1, 1]: x / 127.5 - 1."""
    return np.asarray(video, np.float32) / np.float32(127.5) - np.float32(1.0)


def as_rgb(frames: np.ndarray) -> np.ndarray:
    """`[..., H, W, C]` with C in {1, 3} (or `[..., H, W]`) -> `[..., H, W, 3]`."""
    if frames.ndim >= 3 and frames.shape[-1] == 3:
        return frames
    if frames.ndim >= 3 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    return np.repeat(frames[..., None], 3, axis=-1)


def _check_video(video, name: str = "video") -> np.ndarray:
    video = to_uint8(video)
    if video.ndim != 4 or video.shape[-1] not in (1, 3) or video.shape[0] < 1:
        raise ValueError(f"{name} must be [T, H, W, C] with T >= 1 and C in (1, 3), got shape {video.shape}")
    return video


# ----------------------------------------------------------------------------------------------
# reading


def natural_key(name: str):
    """Sort key comparing digit runs as numbers: frame2.png < frame10.png."""
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def image_sequence_files(folder: str | Path) -> list[Path]:
    """The image files of an image-sequence folder, in natural name order (hidden files ignored)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def is_video_path(path: str | Path) -> bool:
    """A video file (by suffix) or a folder holding at least one image."""
    path = Path(path)
    if path.is_dir():
        return bool(image_sequence_files(path))
    return path.suffix.lower() in VIDEO_SUFFIXES


def _iter_gif(path: Path) -> Iterator[np.ndarray]:
    # Encoders merge identical consecutive GIF frames into one with a longer duration: repeat each
    # frame duration / shortest-duration times so the clip keeps a constant frame rate.
    with Image.open(path) as im:
        durations = [max(int(f.info.get("duration", 0) or 0), 0) for f in ImageSequence.Iterator(im)]
        base = min((d for d in durations if d > 0), default=0)
        for frame, duration in zip(ImageSequence.Iterator(im), durations):
            repeats = max(1, round(duration / base)) if base > 0 else 1
            rgb = np.asarray(frame.convert("RGB"), np.uint8)
            for _ in range(repeats):
                yield rgb


def _iter_image_sequence(folder: Path) -> Iterator[np.ndarray]:
    files = image_sequence_files(folder)
    size = None
    for f in files:
        with Image.open(f) as im:
            rgb = np.asarray(im.convert("RGB"), np.uint8)
        if size is not None and rgb.shape != size:
            raise VideoReadError(
                f"image sequence {folder}: frame {f.name} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"but earlier frames are {size[1]}x{size[0]}")
        size = rgb.shape
        yield rgb


def _iter_av(path: Path) -> Iterator[np.ndarray]:
    import imageio.v3 as iio

    for frame in iio.imiter(path, plugin="pyav"):
        yield as_rgb(np.asarray(frame, np.uint8))


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Stream the frames of a video file or image-sequence folder as uint8 RGB `[H, W, 3]`.

    **Raises:** `VideoReadError` (naming the path) for a missing, unreadable, corrupt or unsupported
    file, or a folder without images. Raised lazily for errors found mid-stream.
    """
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or folder")
    if path.is_dir():
        if not image_sequence_files(path):
            raise VideoReadError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        source = _iter_image_sequence(path)
    elif path.suffix.lower() == ".gif":
        source = _iter_gif(path)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        source = _iter_av(path)
    else:
        raise VideoReadError(f"{path}: unsupported suffix {path.suffix!r}; expected one of {VIDEO_SUFFIXES} "
                             "or a folder of images")
    count = 0
    try:
        for frame in source:
            count += 1
            yield frame
    except VideoReadError:
        raise
    except Exception as e:  # decoder errors come in many types (av.error.*, OSError, ...)
        raise VideoReadError(f"{path}: could not decode frame {count}: {type(e).__name__}: {e}") from e
    if count == 0:
        raise VideoReadError(f"{path}: no frames")


def read_video(path: str | Path, *, max_frames: int | None = None) -> np.ndarray:
    """Read a whole video (file or image-sequence folder) as uint8 RGB `[T, H, W, 3]`.

    **Arguments:** `path`; `max_frames`: stop after this many frames.

    **Raises:** `VideoReadError` naming the path and the reason.
    """
    frames = []
    for frame in iter_frames(path):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    return np.stack(frames)


# ----------------------------------------------------------------------------------------------
# writing


def _write_av(path: Path, video: np.ndarray, fps: float, codec: str, options: dict) -> None:
    import av

    video = as_rgb(video)
    t, h, w, _ = video.shape
    if codec == "libx264" and (h % 2 or w % 2):  # yuv420p needs even sizes: repeat the last row/col
        video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        t, h, w, _ = video.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000), options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _write_gif(path: Path, video: np.ndarray, fps: float) -> None:
    frames = [Image.fromarray(np.ascontiguousarray(f[..., 0] if f.shape[-1] == 1 else f)) for f in video]
    duration = max(int(round(1000.0 / fps)), 10)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0,
                   optimize=False, disposal=1)


def write_video(path: str | Path, video, *, fps: float = 8.0, quality: int = 17) -> Path:
    """Write a video `[T, H, W, C]` (C in {1, 3}; uint8, or float in [-1, 1]) to .mp4, .webm or .gif.

    **Arguments:**
    - `path`: output file; the suffix picks the format (parent folders are created).
    - `video`: the frames; float input is mapped with `to_uint8`.
    - `fps`: frames per second.
    - `quality`: constant-quality factor for MP4/WebM (x264/VP9 CRF; lower is better, 0 lossless
      for VP9 only). MP4 uses H.264 yuv420p, so odd sizes get their last row/column repeated.

    **Returns:** the path.
    """
    path = Path(path)
    video = _check_video(video)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        _write_gif(path, video, fps)
    elif suffix == ".mp4":
        _write_av(path, video, fps, "libx264", {"crf": str(int(quality))})
    elif suffix == ".webm":
        _write_av(path, video, fps, "libvpx-vp9", {"crf": str(int(quality)), "b": "0"})
    else:
        raise ValueError(f"cannot write {path}: suffix must be .mp4, .webm or .gif")
    return path


def frame_grid(videos, *, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile videos into one image: row b = video b, column t = frame t, `padding` pixels between.

    **Arguments:** `videos`: `[B, T, H, W, C]` or `[T, H, W, C]` (uint8, or float in [-1, 1]).

    **Returns:** uint8 `[B (H + p) + p, T (W + p) + p, C]`.
    """
    videos = to_uint8(videos)
    if videos.ndim == 4:
        videos = videos[None]
    if videos.ndim != 5 or videos.shape[-1] not in (1, 3):
        raise ValueError(f"videos must be [B, T, H, W, C] or [T, H, W, C] with C in (1, 3), got {videos.shape}")
    b, t, h, w, c = videos.shape
    p = int(padding)
    grid = np.full((b * (h + p) + p, t * (w + p) + p, c), pad_value, np.uint8)
    for i in range(b):
        for j in range(t):
            y, x = p + i * (h + p), p + j * (w + p)
            grid[y : y + h, x : x + w] = videos[i, j]
    return grid


def write_frame_grid(path: str | Path, videos, *, padding: int = 2, pad_value: int = 255) -> Path:
    """Write `frame_grid(videos)` as a PNG (grayscale when C = 1). Returns the path."""
    path = Path(path)
    grid = frame_grid(videos, padding=padding, pad_value=pad_value)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def read_frame_grid(path: str | Path, *, rows: int, cols: int, padding: int = 2) -> np.ndarray:
    """Inverse of `write_frame_grid`: uint8 `[rows, cols, H, W, C]` (C = 1 for a grayscale PNG)."""
    with Image.open(path) as im:
        grid = np.asarray(im)
    if grid.ndim == 2:
        grid = grid[..., None]
    p = int(padding)
    h = (grid.shape[0] - p) // rows - p
    w = (grid.shape[1] - p) // cols - p
    if h <= 0 or w <= 0 or rows * (h + p) + p != grid.shape[0] or cols * (w + p) + p != grid.shape[1]:
        raise ValueError(f"{path}: a {grid.shape[1]}x{grid.shape[0]} image is not a {rows}x{cols} grid "
                         f"with padding {p}")
    out = np.empty((rows, cols, h, w, grid.shape[-1]), np.uint8)
    for i in range(rows):
        for j in range(cols):
            y, x = p + i * (h + p), p + j * (w + p)
            out[i, j] = grid[y : y + h, x : x + w]
    return out
