"""A user's folder of videos as a `Dataset` (backend-free NumPy).

Layout (searched recursively; hidden files and folders are ignored):

    my_videos/
      captions.jsonl          optional: {"file": "walk.mp4", "caption": "a dog walks on a beach"} per line
      walk.mp4                a video file (.mp4 .webm .mov .mkv .avi .m4v .gif)
      walk.txt                optional sidecar caption for walk.mp4 (wins over captions.jsonl)
      sunset/                 a folder of images (.png .jpg ...) = one video, frames in name order
        0001.png  0002.png ...
      sunset.txt              optional sidecar caption for the sunset/ sequence

Each video is decoded once, frame by frame, resized (shorter side to `resolution`, antialiased)
and centre-cropped to `resolution` x `resolution`, and written to an on-disk cache as one uint8
`.npy` per video (`<cache_dir>/videos/<key>.npy`, the key hashing the path, size, mtime,
resolution and channels). Clips are then read from memory-mapped cache files, so memory stays
bounded by one clip, whatever the folder size; a second run with the same settings decodes nothing.

Clips: `num_frames` frames taken every `frameskip` frames; consecutive clips of a video start
`clip_stride` frames apart (default `num_frames * frameskip`: no frame used twice). Augmentation:
left-right flip with probability 1/2 per clip (`flip=True`; turn it off when captions say "left"
or "right"). A corrupt, empty, unreadable or too-short video is reported with a `SkippedVideoWarning`
and skipped; a folder with no usable clip raises `ValueError` naming the folder and what was found.
"""

from __future__ import annotations

__mirror__ = False

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..assets import default_cache_dir
from .dataset import Dataset, flip_left_right
from .video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoReadError, from_uint8, iter_frames, natural_key

logger = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.jsonl"
CACHE_VERSION = "1"


class SkippedVideoWarning(UserWarning):
    """A video in a dataset folder was skipped (corrupt, empty, unreadable or too short)."""


def resize_center_crop(frame: np.ndarray, resolution: int, channels: int = 3) -> np.ndarray:
    """Centre-crop a uint8 RGB frame `[H, W, 3]` to a square and resize it to `[res, res, channels]`.

    The square is the centred min(H, W) x min(H, W) window (so the shorter side maps to `resolution`);
    resizing is bicubic with antialiasing when shrinking. `channels=1` converts to luminance.
    """
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    im = Image.fromarray(np.ascontiguousarray(frame))
    if channels == 1:
        im = im.convert("L")
    im = im.crop((left, top, left + side, top + side))  # crop first: the filter never sees the sides
    if im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
    out = np.asarray(im, np.uint8)
    return out[..., None] if out.ndim == 2 else out


def find_videos(root: str | Path) -> tuple[list[Path], list[Path]]:
    """Videos under `root`: (video files and image-sequence folders in natural order, ignored files).

    A folder that directly holds images is one image-sequence video (not searched further).
    """
    root = Path(root)
    videos, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted((n for n in dirnames if not n.startswith(".")), key=natural_key)
        files = [f for f in filenames if not f.startswith(".")]
        if d != root and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            videos.append(d)
            dirnames[:] = []
            continue
        for f in sorted(files, key=natural_key):
            p = d / f
            if p.suffix.lower() in VIDEO_SUFFIXES:
                videos.append(p)
            elif not (d == root and f == CAPTIONS_FILE) and p.suffix.lower() != ".txt":
                ignored.append(p)
    return sorted(videos, key=lambda p: natural_key(str(p.relative_to(root)))), ignored


def read_captions(root: Path, videos: list[Path]) -> dict[Path, str]:
    """Captions per video: `<name>.txt` sidecars, else `captions.jsonl` lines {"file", "caption"}."""
    captions: dict[Path, str] = {}
    jsonl = root / CAPTIONS_FILE
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                captions[(root / entry["file"]).resolve()] = str(entry["caption"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                warnings.warn(f"{jsonl}:{n}: ignoring line (expected {{\"file\": ..., \"caption\": ...}}): {e}",
                              SkippedVideoWarning, stacklevel=3)
    for v in videos:
        sidecar = v.with_suffix(".txt") if v.is_file() else v.parent / (v.name + ".txt")
        if sidecar.is_file():
            captions[v.resolve()] = sidecar.read_text(encoding="utf-8").strip()
    return {v: captions.get(v.resolve(), "") for v in videos}


def cache_key(path: Path, resolution: int, channels: int, max_frames: int | None) -> str:
    """Hash of what determines a cached video: path, size and mtime (of each frame for a folder), settings."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{path.resolve()}|{resolution}|{channels}|{max_frames}".encode())
    members = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    for p in members:
        st = p.stat()
        h.update(f"|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def decode_to_cache(path: Path, target: Path, resolution: int, channels: int, max_frames: int | None) -> int:
    """Decode a video frame by frame into `target` (.npy uint8 `[T, res, res, C]`); returns T.

    Frames are appended to a temporary raw file while decoding (memory: one frame), then the .npy
    header is written in front and the file moved into place atomically.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    fd, raw_name = tempfile.mkstemp(dir=target.parent, suffix=".raw")
    raw = Path(raw_name)
    tmp = target.with_suffix(".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for frame in iter_frames(path):
                f.write(resize_center_crop(frame, resolution, channels).tobytes())
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
        shape = (count, resolution, resolution, channels)
        with open(tmp, "wb") as out, open(raw, "rb") as src:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, target)
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return count


@dataclass(frozen=True)
class VideoEntry:
    """One usable video: its source path, cache file, frame count and caption."""

    path: Path
    cache: Path
    num_frames: int
    caption: str


class VideoFolder(Dataset):
    """A folder of the user's videos as clips `[T, res, res, C]` in [-1, 1] (see the module docstring).

    **Arguments:**
    - `root`: the folder.
    - `num_frames`: T, frames per clip.
    - `resolution`: side of the square frames.
    - `frameskip`: take every `frameskip`-th frame.
    - `channels`: 3 (RGB) or 1 (luminance).
    - `clip_stride`: frames between the starts of consecutive clips of one video
      (default `num_frames * frameskip`).
    - `flip`: random left-right flip in `batch(indices, rng)`.
    - `cache_dir`: where decoded videos are stored (default `default_cache_dir()`).
    - `max_frames_per_video`: decode at most this many frames of each video.

    **Attributes:** `videos` (the usable `VideoEntry`s), `skipped` (`(path, reason)` pairs),
    `index` (int `[N, 2]`: video number and start frame of each clip), `captions` (one per clip,
    "" where the video has none; None when no video has a caption), `labels = None`.

    **Raises:** `ValueError` naming the folder and what was found when no clip can be made.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        num_frames: int,
        resolution: int,
        frameskip: int = 1,
        channels: int = 3,
        clip_stride: int | None = None,
        flip: bool = True,
        cache_dir: str | Path | None = None,
        max_frames_per_video: int | None = None,
    ):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"video folder {root} does not exist or is not a folder")
        for name, value, low in (("num_frames", num_frames, 1), ("resolution", resolution, 1),
                                 ("frameskip", frameskip, 1), ("clip_stride", clip_stride or 1, 1)):
            if int(value) < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.root = root
        self.num_frames, self.resolution, self.channels = int(num_frames), int(resolution), int(channels)
        self.frameskip = int(frameskip)
        self.span = (self.num_frames - 1) * self.frameskip + 1  # source frames one clip covers
        self.clip_stride = int(clip_stride) if clip_stride else self.num_frames * self.frameskip
        self.flip = bool(flip)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.max_frames_per_video = max_frames_per_video

        candidates, ignored = find_videos(root)
        captions = read_captions(root, candidates)
        self.videos: list[VideoEntry] = []
        self.skipped: list[tuple[Path, str]] = []
        for path in candidates:
            entry = self._prepare(path, captions[path])
            if entry is not None:
                self.videos.append(entry)

        starts = [(v, s) for v, e in enumerate(self.videos)
                  for s in range(0, e.num_frames - self.span + 1, self.clip_stride)]
        if not starts:
            raise ValueError(self._nothing_usable_message(candidates, ignored))
        self.index = np.asarray(starts, np.int64)
        per_clip = [self.videos[v].caption for v, _ in starts]
        self.captions = per_clip if any(per_clip) else None
        self.labels, self.num_classes = None, None
        logger.info("%s: %d clips from %d videos (%d skipped)", root, len(self), len(self.videos), len(self.skipped))

    def _skip(self, path: Path, reason: str) -> None:
        reason = reason.removeprefix(f"{path}: ")
        self.skipped.append((path, reason))
        warnings.warn(f"skipping {path}: {reason}", SkippedVideoWarning, stacklevel=3)

    def _prepare(self, path: Path, caption: str) -> VideoEntry | None:
        try:
            key = cache_key(path, self.resolution, self.channels, self.max_frames_per_video)
            cache = self.cache_dir / "videos" / f"{key}.npy"
            if cache.is_file():
                count = int(np.load(cache, mmap_mode="r").shape[0])
            else:
                logger.info("decoding %s -> %s", path, cache)
                count = decode_to_cache(path, cache, self.resolution, self.channels, self.max_frames_per_video)
        except VideoReadError as e:
            self._skip(path, str(e))
            return None
        except Exception as e:  # anything else a broken file can raise (OSError, PIL, numpy header, ...)
            self._skip(path, f"{type(e).__name__}: {e}")
            return None
        if count < self.span:
            self._skip(path, f"{count} frames, but a clip needs {self.span} "
                             f"(num_frames={self.num_frames}, frameskip={self.frameskip})")
            return None
        return VideoEntry(path, cache, count, caption)

    def _nothing_usable_message(self, candidates, ignored) -> str:
        found = (f"{len(candidates)} video file(s)/image-sequence folder(s)"
                 + (f" and {len(ignored)} other file(s) ignored (e.g. {ignored[0].name})" if ignored else ""))
        lines = [f"no usable clip in video folder {self.root}: found {found}."]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped[:10]]
        if len(self.skipped) > 10:
            lines.append(f"  ... and {len(self.skipped) - 10} more skipped")
        lines.append(f"Expected videos ({', '.join(VIDEO_SUFFIXES)}) or folders of images "
                     f"({', '.join(IMAGE_SUFFIXES)}) with at least {self.span} frames.")
        return "\n".join(lines)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def video_ids(self) -> np.ndarray:
        """int `[N]`: which video each clip comes from (joint batches draw image frames from others)."""
        return self.index[:, 0]

    def _frames(self, v: int) -> np.ndarray:
        return np.load(self.videos[v].cache, mmap_mode="r")

    def clip(self, i: int) -> np.ndarray:
        """Clip i, float32 `[T, res, res, C]` in [-1, 1]."""
        v, start = self.index[self.check_index(i)]
        return from_uint8(self._frames(v)[start : start + self.span : self.frameskip])

    def frame(self, i: int, t: int) -> np.ndarray:
        """Frame t of clip i, float32 `[res, res, C]` in [-1, 1]."""
        if not 0 <= int(t) < self.num_frames:
            raise IndexError(f"frame {t} out of range for clips of {self.num_frames} frames")
        v, start = self.index[self.check_index(i)]
        return from_uint8(self._frames(v)[start + int(t) * self.frameskip])

    def augment(self, video, rng):
        return flip_left_right(video, rng) if self.flip else video
