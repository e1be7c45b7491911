"""How good are unconditional Moving MNIST samples? Digits that are recognisable and stay the same.

For a set of sample videos (one digit per clip) this reports, with the same numbers on real
clips and on frame-shuffled clips (every frame from another clip) as the two ends of the scale:

- `shift_coherence`: `shift_coherence.temporal_coherence`, the best shift-aligned correlation of
  consecutive frames (rigid motion scores 1; morphing or flicker lower).
- `carry_over`: the fraction of consecutive frame pairs whose digit carries over (matched,
  moved at most τ pixels, same predicted class; `coherence.boundary_coherence` with no block
  boundaries: its within-block score).
- `recognisable`: the fraction of frames holding exactly one single-digit component that the
  digit classifier (`digits.py`, 95.7 % on MNIST test digits) assigns a class with probability
  at least `confidence`.
- `same_digit`: the fraction of videos whose recognisable frames (at least half of the video's
  frames) all get one class: the digit's identity does not drift within the video.
- `empty_frames`: the fraction of frames with no digit found.
- `most_common`, `most_common_share`: the class recognised most often, and its share of the
  recognised frames: how much of `recognisable` one digit makes up (real clips ≈ 0.1-0.2 over
  ten classes; a model that draws mostly 1s, the easiest digit, scores high on the measures above
  with little variety).
- `on_label` (class-conditional samples, when each video's requested class is known): the
  fraction of frames recognised (as above) as the class the video was asked for.

    python -m vdm_ref.support.eval.sample_quality samples.npz [more.npz ...] --digit-size 20

(`on_label` reads each video's class from the "labels" of the .json that `python cli.py sample
--label ...` writes beside the .npz.)

(an .npz holding "video" [B, T, H, W, C] in [-1, 1], as `python cli.py sample` writes).
"""

from __future__ import annotations

import numpy as np

from .coherence import boundary_coherence
from .digits import DigitClassifier, load_digit_classifier
from .tracker import detect_digits

__mirror__ = False

#: τ in pixels: Moving MNIST digits move 1-3 px per frame, so 2 x 2 + 1 (as in docs/results.md).
JUMP_TOLERANCE = 5.0


def digit_sample_quality(videos, digit_size: int, *, classifier: DigitClassifier | None = None,
                         confidence: float = 0.9, jump_tolerance: float = JUMP_TOLERANCE,
                         labels=None) -> dict:
    """The module docstring's numbers for videos [B, T, H, W, C] in [-1, 1] (floats in a dict);
    `on_label` too when `labels` [B] gives each video's requested class."""
    from .shift_coherence import temporal_coherence

    v = np.asarray(videos, np.float64)
    if v.ndim != 5:
        raise ValueError(f"videos must be [B, T, H, W, C], got shape {np.shape(videos)}")
    b, t = v.shape[:2]
    clf = load_digit_classifier() if classifier is None else classifier
    dets = detect_digits(v.reshape((b * t,) + v.shape[2:]), digit_size)
    report = boundary_coherence(v, [], digit_size, classifier=clf, jump_tolerance=jump_tolerance,
                                detections=dets)
    found = np.full((b, t), -1)
    for k, d in enumerate(dets):
        if len(d) == 1 and bool(d.single[0]):
            p = clf.probabilities(d.crops)[0]
            if p.max() >= confidence:
                found[k // t, k % t] = int(np.argmax(p))
    recognised = found >= 0
    counts = np.bincount(found[recognised], minlength=1)
    same = [len(set(row[row >= 0])) == 1 for row in found if (row >= 0).sum() * 2 >= t]
    extra = {}
    if labels is not None:
        asked = np.asarray(labels, np.int64).reshape(-1)
        if asked.shape != (b,):
            raise ValueError(f"labels: expected one class per video ({b}), got {asked.size}")
        extra["on_label"] = float(np.mean(found == asked[:, None]))
    return {
        "videos": int(b), "frames": int(t),
        "shift_coherence": temporal_coherence(v),
        "carry_over": report.within, "carry_over_se": report.within_se,
        "recognisable": float(recognised.mean()),
        "same_digit": float(np.sum(same) / b),
        "empty_frames": report.empty_frames,
        "most_common": int(np.argmax(counts)) if counts.sum() else None,
        "most_common_share": float(counts.max() / counts.sum()) if counts.sum() else 0.0,
        **extra,
    }


def requested_labels(npz_path, num_videos: int):
    """Each video's requested class from the .json beside an .npz of `python cli.py sample
    --label ...` ("labels"), or None when the videos were not class-conditioned."""
    import json
    from pathlib import Path

    side = Path(npz_path).with_suffix(".json")
    try:
        labels = json.loads(side.read_text()).get("labels") if side.is_file() else None
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{side}: not the JSON object `python cli.py sample` writes ({err})") from None
    if labels is not None and len(labels) != num_videos:
        raise ValueError(f"{side}: {len(labels)} labels for {num_videos} videos")
    return labels


def reference_videos(num_videos: int, num_frames: int, *, resolution: int = 32, digit_size: int = 20,
                     speed=(1.0, 3.0), seed: int = 4321) -> dict[str, np.ndarray]:
    """Real one-digit test-split clips and the same clips frame-shuffled across videos."""
    from vdm_ref.support.data import MovingMNIST

    ds = MovingMNIST(num_videos, num_frames=num_frames, resolution=resolution, digit_size=digit_size,
                     num_digits=1, speed=speed, split="test", seed=seed)
    real = ds.batch(np.arange(num_videos))
    shuffled = np.stack([np.roll(real[:, f], f, axis=0) for f in range(num_frames)], axis=1)
    return {"real clips": real, "frame-shuffled clips": shuffled}


def main(argv=None) -> None:
    """Print a Markdown table: each .npz given, then real and frame-shuffled clips."""
    import argparse
    import zipfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("samples", nargs="*", help=".npz files with 'video' [B, T, H, W, C] in [-1, 1]")
    p.add_argument("--digit-size", type=int, default=20)
    p.add_argument("--confidence", type=float, default=0.9)
    p.add_argument("--reference-videos", type=int, default=64, help="real clips to score (0: none)")
    args = p.parse_args(argv)
    rows = {}
    frames, size = 8, 32
    for path in args.samples:
        try:
            video = np.load(path)["video"]
            labels = requested_labels(path, len(video))
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:  # missing, truncated, no "video"
            p.error(f"{path}: {err}")
        frames, size = video.shape[1], video.shape[2]
        rows[path] = digit_sample_quality(video, args.digit_size, confidence=args.confidence, labels=labels)
    if args.reference_videos:
        for name, video in reference_videos(args.reference_videos, frames, resolution=size,
                                            digit_size=args.digit_size).items():
            rows[name] = digit_sample_quality(video, args.digit_size, confidence=args.confidence)
    on_label = any("on_label" in r for r in rows.values())
    print("| videos | n | shift coherence | carry-over | recognisable frames | same digit | empty frames |"
          " most common digit |" + (" on label |" if on_label else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if on_label else ""))
    for name, r in rows.items():
        common = "—" if r["most_common"] is None else f"{r['most_common_share']:.2f} ({r['most_common']})"
        print(f"| {name} | {r['videos']} | {r['shift_coherence']:.2f} | {r['carry_over']:.2f} ± "
              f"{r['carry_over_se']:.2f} | {r['recognisable']:.2f} | {r['same_digit']:.2f} | "
              f"{r['empty_frames']:.2f} | {common} |" + (f" {r['on_label']:.2f} |" if "on_label" in r
                                                         else " — |" if on_label else ""))


if __name__ == "__main__":
    main()
