"""Training data: the dataset of a run, the condition inputs of its clips, and the batches of
each step (built ahead of time on a background thread).

Determinism: the batch of step n is a pure function of (seed, n) — clip indices from
`numpy.random.default_rng([seed, 1, n])`, row b's image frames and augmentation from
`default_rng([seed, 1, n, b])` — so a resumed run draws exactly the batches of the uninterrupted
run, and each process of a multi-host run builds exactly its rows of the single-process batch.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from pathlib import Path

import numpy as np

from vdm_fast.inputs import ConditionEncoder
from vdm_ref.configs import Config

from .errors import TrainError


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Where training clips come from (the embedded Moving MNIST unless `data_dir` is given)."""

    data_dir: str | None = None
    mnist_videos: int = 100_000
    mnist_digits: int = 1
    mnist_digit_size: int = 20
    mnist_speed: tuple[float, float] = (1.0, 3.0)
    data_seed: int = 0


def make_dataset(config: Config, data: DataOptions):
    """The training Dataset for a config; TrainError for a missing, empty or unusable folder,
    or data that cannot feed the config (channels, classes, captions, joint training)."""
    u = config.unet
    if data.data_dir is not None:
        ds = _video_folder(Path(data.data_dir), config)
    else:
        from vdm_ref.support.data import MovingMNIST

        if u.in_channels != 1:
            raise TrainError(f"Moving MNIST is grayscale but --in-channels is {u.in_channels}: use "
                             "--in-channels 1 --out-channels 1, or give --data-dir")
        try:
            ds = MovingMNIST(data.mnist_videos, num_frames=u.frames, resolution=u.image_size,
                             num_digits=data.mnist_digits, digit_size=min(data.mnist_digit_size, u.image_size),
                             speed=tuple(data.mnist_speed), frameskip=u.frameskip, seed=data.data_seed)
        except ValueError as e:
            raise TrainError(f"Moving MNIST (--mnist-* flags): {e}") from None
    _check_conditioning(ds, config)
    return ds


def _video_folder(root: Path, config: Config):
    from vdm_ref.support.data import VideoFolder

    u = config.unet
    if not root.exists():
        raise TrainError(f"--data-dir {root}: no such folder")
    if not root.is_dir():
        raise TrainError(f"--data-dir {root}: not a folder (expected a folder of videos)")
    if not any(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        raise TrainError(f"--data-dir {root}: the folder is empty (expected videos or folders of frames)")
    try:
        return VideoFolder(root, num_frames=u.frames, resolution=u.image_size, frameskip=u.frameskip,
                           channels=u.in_channels, flip=config.train.flip)
    except ValueError as e:
        raise TrainError(f"--data-dir {root}: {e}") from None


def _check_conditioning(ds, config: Config) -> None:
    u = config.unet
    if u.conditioning == "class" and getattr(ds, "num_classes", None) is None:
        raise TrainError("--conditioning class needs class labels, but the data has none (a video folder "
                         "has captions at most): use --conditioning none or text")
    if u.conditioning == "class" and ds.num_classes != u.num_classes:
        raise TrainError(f"the data has {ds.num_classes} classes but --num-classes is {u.num_classes}")
    if u.conditioning == "text" and ds.captions is None:
        raise TrainError("--conditioning text needs captions, but the data has none: add captions.jsonl "
                         "or sidecar .txt files, or use --conditioning none")
    if config.train.image_frames > 0 and len(np.unique(ds.video_ids)) < 2:
        raise TrainError(f"joint training (--image-frames {config.train.image_frames}) draws image "
                         "frames from other videos, but the data has a single video: use --image-frames 0")


# ---------------------------------------------------------------------------------------------
# Condition inputs


def clip_label(ds, i) -> int:
    """The class label of clip i (Moving MNIST: its first digit, without materialising the clip)."""
    if hasattr(ds, "spec"):
        return int(ds.spec(int(i)).labels[0])
    return int(ds.labels[int(i)])


def clip_caption(ds, i) -> str:
    """The caption of clip i."""
    if hasattr(ds, "caption"):
        return ds.caption(int(i))
    return ds.captions[int(i)]


def encode_conditions(ds, indices, config: Config, encoder: ConditionEncoder | None = None) -> dict:
    """The condition inputs of clips `indices` of `ds`, as the train step takes them.

    Returns {} (unconditional), {"label": one-hot float32 [B, num_classes]} (class) or
    {"tokens": [B, L, 384], "token_mask": bool [B, L]} (text, L = `CAPTION_TOKENS`), encoded by
    `encoder` (`vdm_fast.inputs.ConditionEncoder`, memoising captions; a new one when None).
    """
    u = config.unet
    encoder = ConditionEncoder(u) if encoder is None else encoder
    if u.conditioning == "class":
        return {"label": encoder.labels([clip_label(ds, i) for i in indices])}
    if u.conditioning == "text":
        tokens, mask = encoder.captions([clip_caption(ds, i) for i in indices])
        return {"tokens": tokens, "token_mask": mask}
    return {}


# ---------------------------------------------------------------------------------------------
# Batches


class Batcher:
    """Batch n of a run is a pure function of (seed, n): the clip indices come from
    `numpy.random.default_rng([seed, 1, n])`, row b's image frames and augmentation from
    `default_rng([seed, 1, n, b])`. `rows` selects this process's share of the global batch
    (multi-host): every process draws the same indices and builds only its own rows, which are
    the rows a single process would build."""

    def __init__(self, ds, config: Config, seed: int, rows: slice = slice(None), text_encoder=None):
        self.ds, self.config, self.seed, self.rows = ds, config, int(seed), rows
        self.conditions = ConditionEncoder(config.unet, text_encoder=text_encoder)

    def __call__(self, n: int) -> dict:
        from vdm_ref.support.data import joint_batch

        tc = self.config.train
        rng = np.random.default_rng([self.seed, 1, int(n)])
        rows = range(tc.batch_size)[self.rows]
        indices = self.ds.sample_indices(tc.batch_size, rng)[self.rows]
        parts = [joint_batch(self.ds, [i], tc.image_frames, np.random.default_rng([self.seed, 1, int(n), b]))
                 for b, i in zip(rows, indices)]
        x, is_image = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        batch = {"x": x.astype(np.float32)}
        if tc.image_frames > 0:
            batch["frame_mask"] = is_image
        batch.update(encode_conditions(self.ds, indices, self.config, self.conditions))
        return batch


class Prefetcher:
    """Builds batches start, start+1, ... on a background thread (the GIL is released while
    XLA runs the step), so data preparation overlaps the computation."""

    def __init__(self, batcher, start: int, depth: int = 3):
        self.batcher, self.next, self.q = batcher, int(start), queue.Queue(maxsize=depth)
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        n = self.next
        try:
            while not self.stop.is_set():
                item = (n, self.batcher(n))
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        pass
                n += 1
        except BaseException as e:  # surfaced to the training thread
            self.error = e
            self.q.put((None, None))

    def get(self, n: int) -> dict:
        """The batch of step n (re-raises an error of the background thread)."""
        got, batch = self.q.get()
        if got is None:
            raise self.error
        if got != n:
            raise RuntimeError(f"prefetched batch {got}, expected {n}")
        return batch

    def close(self):
        """Stop the background thread after its current batch."""
        self.stop.set()
