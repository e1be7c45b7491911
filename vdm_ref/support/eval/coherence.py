"""Boundary coherence of block-autoregressive extension on Moving MNIST (Sec. 4.3.3, Fig. 4).

A video extended block by block is coherent if what is on screen just before a block boundary is
still there just after it: the same digits, where their motion would have taken them. For a pair
of consecutive frames (f, g):

1. detect the digits of each (`tracker.detect_digits`) and classify each (`digits.DigitClassifier`);
2. match the digits of f to those of g by minimum total centre distance (an assignment);
3. a digit *carries over* if it is matched, its centre moved at most τ pixels (`jump_tolerance`),
   and its predicted class is unchanged (the class is compared only when both components are
   single digits: two overlapping digits form one component whose crop has no one class, and
   then position alone decides);
4. the pair's score is  carried / max(n_f, n_g)  (1 when both frames are empty), so a digit
   that appears, vanishes, changes class or teleports costs as much as one that is lost.

The *boundary coherence* of a set of extended videos is the mean pair score over the pairs that
straddle a block boundary (the last frame before the first generated frame of a block, and that
frame). The same score over every other consecutive pair — pairs generated within one block —
is the *within-block coherence*: the level of frame-to-frame consistency the model reaches when
nothing is stitched, which is what a perfect conditional sampler would also reach at the
boundaries. Reported alongside: identity agreement (matched digits keeping their class), count
agreement (n_f = n_g), and the median jump at boundaries over the median within-block step.

τ defaults to 2 × the median within-block step + 1 px over the videos scored (the data's own
typical per-frame motion plus slack for bounces and centroid jitter); pass it explicitly to
compare sets of videos on one scale.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .digits import DigitClassifier, load_digit_classifier
from .tracker import THRESHOLD, DigitDetections, detect_digits

__mirror__ = False


def match_digits(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i, j) matching centres a [n, 2] to b [m, 2] with minimum total distance.

    min(n, m) pairs; exhaustive over assignments for up to 6 digits, greedy beyond.
    """
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return []
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    if min(n, m) <= 6 and max(n, m) <= 8:
        best, best_cost = None, np.inf
        if n <= m:
            for perm in itertools.permutations(range(m), n):
                cost = d[np.arange(n), perm].sum()
                if cost < best_cost:
                    best, best_cost = list(zip(range(n), perm)), cost
        else:
            for perm in itertools.permutations(range(n), m):
                cost = d[perm, np.arange(m)].sum()
                if cost < best_cost:
                    best, best_cost = list(zip(perm, range(m))), cost
        return [(int(i), int(j)) for i, j in best]
    pairs, used_i, used_j = [], set(), set()
    for flat in np.argsort(d, axis=None):
        i, j = divmod(int(flat), m)
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return pairs


@dataclass(frozen=True)
class PairScores:
    """What carried over between two frames.

    n_before, n_after: digits detected; jumps: centre distance of each matched pair (pixels);
    same_label: bool per matched pair of single digits; carried: matched, jump ≤ τ and (same
    label, or either side is a merged component that has no one label); score:
    carried / max(n_before, n_after) (1 if both are 0).
    """

    n_before: int
    n_after: int
    jumps: np.ndarray
    same_label: np.ndarray
    carried: int
    score: float


def pair_scores(before: DigitDetections, after: DigitDetections, labels_before, labels_after,
                jump_tolerance: float) -> PairScores:
    """Score one pair of frames (module docstring, steps 2–4)."""
    pairs = match_digits(before.centres, after.centres)
    jumps = np.array([np.linalg.norm(before.centres[i] - after.centres[j]) for i, j in pairs])
    same = np.array([labels_before[i] == labels_after[j] for i, j in pairs], bool)
    single = np.array([bool(before.single[i] and after.single[j]) for i, j in pairs], bool)
    carried = int(np.sum((jumps <= jump_tolerance) & (same | ~single))) if pairs else 0
    n = max(len(before), len(after))
    return PairScores(len(before), len(after), jumps, same[single], carried, 1.0 if n == 0 else carried / n)


def block_boundaries(first_block: int, new_per_block: int, length: int) -> list[int]:
    """Indices of the first generated frame of each block after the first: first_block,
    first_block + new_per_block, ... < length (a uniform extension schedule)."""
    if first_block < 1 or new_per_block < 1:
        raise ValueError(f"first_block={first_block}, new_per_block={new_per_block}: expected >= 1")
    return list(range(first_block, length, new_per_block))


def splice_videos(a, b, at: int) -> np.ndarray:
    """Frames [0, at) of a followed by frames [at, T) of b: a deliberately incoherent boundary."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"videos to splice must have one shape, got {a.shape} and {b.shape}")
    return np.concatenate([a[:, :at], b[:, at:]], axis=1)


@dataclass(frozen=True)
class CoherenceReport:
    """Boundary vs within-block coherence of a set of videos (module docstring).

    boundary / within: mean pair score; identity_*: fraction of matched single digits keeping
    their class; count_*: fraction of pairs with equal digit counts; median_jump_*: median centre
    jump of matched digits (pixels); jump_ratio = median_jump_boundary / median_jump_within;
    per_boundary: the boundary score at each boundary index (mean over videos);
    jump_tolerance: τ used; pairs_boundary / pairs_within: how many pairs were scored;
    empty_frames: fraction of frames with no digit found (a blank pair scores 1, so read the
    scores together with this); single_digits: fraction of detections that fit one digit's box
    (low when frames hold noise or smears rather than digits); boundary_se / within_se: standard
    error of the mean pair score, std / sqrt(pairs) (pairs of one video are not independent, so
    read it as a lower bound); position_*: fraction of matched digits that moved at most τ
    (the position half of the test alone).
    """

    boundary: float
    within: float
    identity_boundary: float
    identity_within: float
    count_boundary: float
    count_within: float
    median_jump_boundary: float
    median_jump_within: float
    jump_ratio: float
    jump_tolerance: float
    pairs_boundary: int
    pairs_within: int
    empty_frames: float = 0.0
    single_digits: float = float("nan")
    boundary_se: float = float("nan")
    within_se: float = float("nan")
    position_boundary: float = float("nan")
    position_within: float = float("nan")
    per_boundary: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The report as a plain dict (JSON-able)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def _mean(x) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _se(x) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _median(x) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def boundary_coherence(videos, boundaries, digit_size: int, *, classifier: DigitClassifier | None = None,
                       jump_tolerance: float | None = None, threshold: float = THRESHOLD,
                       detections: list[DigitDetections] | None = None) -> CoherenceReport:
    """Boundary and within-block coherence of extended videos (module docstring).

    **Arguments:**
    - `videos`: [B, T, H, W, C] (or [T, H, W, C]) in [-1, 1].
    - `boundaries`: frame indices b where a new block starts; the pair (b − 1, b) straddles it.
    - `digit_size`: the dataset's digit size in pixels (the tracker's crop window).
    - `classifier`: default `load_digit_classifier()`.
    - `jump_tolerance`: τ in pixels; None: 2 × median within-block step + 1.
    - `threshold`: ink level of the tracker.
    - `detections`: the `detect_digits` result for the B·T frames (video-major), when the caller
      already has it; None detects here.

    **Returns:** a `CoherenceReport`.
    """
    v = np.asarray(videos, np.float64)
    if v.ndim == 4:
        v = v[None]
    if v.ndim != 5:
        raise ValueError(f"videos must be [B, T, H, W, C] or [T, H, W, C], got shape {np.shape(videos)}")
    b, t = v.shape[:2]
    bset = sorted({int(x) for x in boundaries})
    bad = [x for x in bset if not 1 <= x < t]
    if bad:
        raise ValueError(f"boundaries {bad} outside [1, {t}) for videos of {t} frames")
    clf = load_digit_classifier() if classifier is None else classifier
    dets = detect_digits(v.reshape((b * t,) + v.shape[2:]), digit_size, threshold=threshold) \
        if detections is None else list(detections)
    if len(dets) != b * t:
        raise ValueError(f"detections: {len(dets)} frames given for {b}x{t} video frames")
    crops = [d.crops for d in dets]
    sizes = [len(c) for c in crops]
    all_labels = clf.predict(np.concatenate(crops)) if sum(sizes) else np.zeros(0, np.int64)
    labels = np.split(all_labels, np.cumsum(sizes)[:-1])

    def at(i, f):
        return dets[i * t + f], labels[i * t + f]

    if jump_tolerance is None:
        steps = []
        for i in range(b):
            for f in range(1, t):
                if f in bset:
                    continue
                (d0, _), (d1, _) = at(i, f - 1), at(i, f)
                steps += [np.linalg.norm(d0.centres[p] - d1.centres[q]) for p, q in match_digits(d0.centres, d1.centres)]
        jump_tolerance = 2.0 * _median(steps) + 1.0 if steps else 1.0
    scores = {"boundary": [], "within": []}
    same = {"boundary": [], "within": []}
    count = {"boundary": [], "within": []}
    jumps = {"boundary": [], "within": []}
    per_boundary = {x: [] for x in bset}
    for i in range(b):
        for f in range(1, t):
            kind = "boundary" if f in per_boundary else "within"
            (d0, l0), (d1, l1) = at(i, f - 1), at(i, f)
            s = pair_scores(d0, d1, l0, l1, jump_tolerance)
            scores[kind].append(s.score)
            same[kind] += list(s.same_label)
            count[kind].append(s.n_before == s.n_after)
            jumps[kind] += list(s.jumps)
            if kind == "boundary":
                per_boundary[f].append(s.score)
    mj_b, mj_w = _median(jumps["boundary"]), _median(jumps["within"])
    return CoherenceReport(
        boundary=_mean(scores["boundary"]), within=_mean(scores["within"]),
        identity_boundary=_mean(same["boundary"]), identity_within=_mean(same["within"]),
        count_boundary=_mean(count["boundary"]), count_within=_mean(count["within"]),
        median_jump_boundary=mj_b, median_jump_within=mj_w,
        jump_ratio=mj_b / mj_w if mj_w and np.isfinite(mj_w) and mj_w > 0 else float("nan"),
        jump_tolerance=float(jump_tolerance),
        pairs_boundary=len(scores["boundary"]), pairs_within=len(scores["within"]),
        empty_frames=float(np.mean([len(d) == 0 for d in dets])),
        single_digits=_mean(np.concatenate([d.single for d in dets])) if sum(sizes) else float("nan"),
        boundary_se=_se(scores["boundary"]), within_se=_se(scores["within"]),
        position_boundary=_mean(np.asarray(jumps["boundary"]) <= jump_tolerance),
        position_within=_mean(np.asarray(jumps["within"]) <= jump_tolerance),
        per_boundary={k: _mean(x) for k, x in per_boundary.items()},
    )


def reference_scores(*, num_videos: int = 64, num_frames: int = 32, boundaries=(8, 12, 16, 20, 24, 28),
                     resolution: int = 32, digit_size: int = 20, num_digits=1, speed=(1.0, 3.0),
                     seed: int = 1234, classifier: DigitClassifier | None = None) -> dict[str, CoherenceReport]:
    """The measure on real Moving MNIST clips and on clips spliced from a different clip at every
    boundary (the two ends of its scale), for the same boundaries as an extension run.

    Returns {"real": report, "spliced": report}; the spliced one uses the real one's τ.
    """
    from vdm_ref.support.data import MovingMNIST

    ds = MovingMNIST(num_videos, num_frames=num_frames, resolution=resolution, digit_size=digit_size,
                     num_digits=num_digits, speed=speed, split="test", seed=seed)
    real = ds.batch(np.arange(num_videos))
    spliced = real
    for k, b in enumerate(sorted(boundaries)):
        spliced = splice_videos(spliced, np.roll(real, k + 1, axis=0), b)
    clf = load_digit_classifier() if classifier is None else classifier
    r = boundary_coherence(real, boundaries, digit_size, classifier=clf)
    s = boundary_coherence(spliced, boundaries, digit_size, classifier=clf, jump_tolerance=r.jump_tolerance)
    return {"real": r, "spliced": s}


def main(argv=None) -> None:
    """`python -m vdm_ref.support.eval.coherence`: the measure on real and spliced Moving MNIST clips."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--videos", type=int, default=64)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--boundaries", type=int, nargs="+", default=[8, 12, 16, 20, 24, 28])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--digit-size", type=int, default=20)
    p.add_argument("--digits", type=int, default=1)
    p.add_argument("--speed", type=float, nargs=2, default=[1.0, 3.0])
    p.add_argument("--npz", nargs="+", default=None,
                   help="score saved videos instead: .npz files written by `cli.py extend` (video, boundaries)")
    p.add_argument("--jump-tolerance", type=float, default=None, help="τ in pixels (default: 2 x median step + 1)")
    p.add_argument("--pool", action="store_true", help="with --npz: score all the files' videos as one set")
    a = p.parse_args(argv)
    if a.npz:
        clf = load_digit_classifier()
        runs = []
        for path in a.npz:
            with np.load(path) as z:
                runs.append((path, z["video"], z["boundaries"].tolist()))
        if a.pool:
            if len({(tuple(b), v.shape[1:]) for _, v, b in runs}) != 1:
                raise SystemExit("--pool: the files must share video shape and boundaries")
            runs = [("pooled", np.concatenate([v for _, v, _ in runs]), runs[0][2])]
        for name, video, boundaries in runs:
            _print(name, boundary_coherence(video, boundaries, a.digit_size, classifier=clf,
                                            jump_tolerance=a.jump_tolerance))
        return
    out = reference_scores(num_videos=a.videos, num_frames=a.frames, boundaries=a.boundaries, resolution=a.resolution,
                           digit_size=a.digit_size, num_digits=a.digits, speed=tuple(a.speed))
    for name, r in out.items():
        _print(name, r)


def _print(name: str, r: CoherenceReport) -> None:
    print(f"{name:8s} boundary {r.boundary:.3f} ± {r.boundary_se:.3f}  within {r.within:.3f} ± {r.within_se:.3f}  "
          f"identity {r.identity_boundary:.3f} / {r.identity_within:.3f}  count {r.count_boundary:.3f} / "
          f"{r.count_within:.3f}  position {r.position_boundary:.3f} / {r.position_within:.3f}  median jump {r.median_jump_boundary:.2f} / {r.median_jump_within:.2f} px  "
          f"(τ = {r.jump_tolerance:.2f}, {r.pairs_boundary} boundary pairs, empty frames {r.empty_frames:.3f}, "
          f"single digits {r.single_digits:.3f})")
    print(f"{'':8s} per boundary: " + ", ".join(f"{k}: {v:.2f}" for k, v in r.per_boundary.items()))


if __name__ == "__main__":
    main()
