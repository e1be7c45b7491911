"""Caption fidelity on Moving MNIST: does a video show the digits its caption names, moving the
way the caption says?

A caption of the project's grammar (`vdm_ref.support.data.captions`) is a list of clauses
"digit D is <verb> <direction>" / "digit D is standing still". `parse_caption` turns each clause
into the digit class D and the bool `moved [2, 2]` = [axis (x, y), (negative, positive)] that
`captions.moved_directions` would give a clip of that caption ("moving right": x = (F, T),
y = (F, F); "bouncing left and right": x = (T, T), y = (F, F); "standing still": all False).
Direction words are read as a set (any order, so "down and right" = "right and down");
"bouncing" needs a way along some axis in both directions, as the generator only says it then.
A clause that does not fit the grammar is kept as *unparsed* (with the reason) and not scored.

A video is scored clause by clause:

1. **Tracks.** The digits of every frame (`tracker.detect_digits`) are classified
   (`digits.DigitClassifier`) and linked from frame to frame by minimum total centre distance
   (`coherence.match_digits`), a link allowed only within ρ = `LINK_FRACTION` · digit_size pixels
   per frame elapsed (a track may skip up to `MAX_GAP` frames; a component of two merged digits
   may continue both of their tracks). A track counts if it is seen in at least `MIN_COVERAGE`
   of the frames; its class is the majority of its single-digit predictions over frames.
2. **Motion of a track.** Along each axis, from its single-digit centres (all centres if fewer
   than two): the largest rise  R⁺ = max_{i<j} (c_j − c_i)  and the largest fall
   R⁻ = max_{i<j} (c_i − c_j)  (`excursions`). The track fits the clause's motion
   (`motion_satisfied`) iff every direction the clause names has R ≥ τ₀, every axis it names has
   a trip max(R⁻, R⁺) ≥ τ, and every direction it does not name has R < τ; with
   τ = `MOTION_FRACTION` · resolution and τ₀ = `STEP_FRACTION` · resolution (2 px and 1 px at
   32 x 32). So "moving right" fails if the digit went left, up or down by τ or more, or never
   made a trip of τ to the right; "bouncing left and right" needs a trip of τ along x and a
   reversal of at least τ₀; "standing still" needs every excursion under τ. An excursion between
   τ₀ and τ is read both ways ("right" and "left and right" both fit a 1.5-px step back).
3. **Per clause**, clauses are assigned to distinct tracks (a maximum matching) three times:
   *digit* = a track of class D; *motion* = a track with the clause's motion (any class);
   *both* = a track of class D with that motion. A video's **fidelity** is the fraction of its
   parsed clauses satisfied in *both*; the *digit* and *motion* rates are reported beside it.
   A set's score is the mean over videos with at least one parsed clause, with the standard
   error std / sqrt(n).

Why these thresholds (measured at the mnist-small-text data settings: 8 frames, 32 x 32, one
20-px digit at 1-3 px per frame; see docs/evaluation.md "Caption fidelity"):
- τ₀ = resolution / 32 = 1 px: the captions come from whole-pixel positions and name any 1-px
  step (`captions.moved_directions`): a digit that reaches a wall in the last frames and steps
  back by 1 px is captioned "left and right". Requiring τ₀ = τ = 2 px for the named directions
  fails 7 % of real clips on motion (all of them such 1-px reversals); τ₀ = 1 px fails none.
- τ = resolution / 16 = 2 px: above the wobble of a generated digit's centre along the axis it
  does not move on (at most 0.8 px, median 0.3 px, over 16 samples of the shipped unconditional
  mnist-small checkpoint), and far below a real trip (7-21 px in 8 frames), so a still or
  wobbling digit does not pass for a moving one, nor a digit moving along x for one moving along y.
- ρ = digit_size / 2 per frame: several times the fastest real motion (3 px per frame at 32),
  well under the spacing of two digits that do not overlap, so a digit that jumps half its size
  between frames starts a new track.
- `MIN_COVERAGE` = 1/2: a digit visible in under half the frames is not "shown" by the video.

    python -m vdm_ref.support.eval.caption_fidelity samples.npz --from-npz
    python -m vdm_ref.support.eval.caption_fidelity samples.npz --captions captions.json
    python -m vdm_ref.support.eval.caption_fidelity --reference 256
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .coherence import match_digits
from .digits import DigitClassifier, load_digit_classifier
from .tracker import DigitDetections, detect_digits

__mirror__ = False

#: τ = MOTION_FRACTION · resolution: the excursion (pixels) that counts as a trip one way; a
#: direction a caption does not name must stay under it.
MOTION_FRACTION = 1.0 / 16.0
#: τ₀ = STEP_FRACTION · resolution: the least excursion of a direction a caption names.
STEP_FRACTION = 1.0 / 32.0
#: ρ = LINK_FRACTION · digit_size: the largest centre step (pixels per frame) a track links.
LINK_FRACTION = 0.5
#: A track must be seen in at least this fraction of the frames to count.
MIN_COVERAGE = 0.5
#: A track may skip this many frames (a digit lost in a merge or a faint frame) and continue.
MAX_GAP = 3
#: The data settings of `python cli.py train`'s Moving MNIST (vdm_fast/training/command.py
#: defaults: --mnist-digits 1 --mnist-digit-size 20 --mnist-speed 1 3), used for the presets.
TRAIN_DATA = {"num_digits": 1, "digit_size": 20, "speed": (1.0, 3.0)}

_WORDS = {"left": (0, 0), "right": (0, 1), "up": (1, 0), "down": (1, 1)}
_CLAUSE = re.compile(r"digit (\S+) is (?:(standing still)|(moving|bouncing) (.+))")
_SPLIT = re.compile(r"(?:, and |, | and )(?=digit \S+ is )")


@dataclass(frozen=True)
class Clause:
    """One clause of a caption.

    - `text`: the clause as written (normalised: lower case, single spaces).
    - `digit`: D in 0..9, or None when unparsed.
    - `moved`: bool `[2, 2]`, [axis (x, y), (negative, positive)] as `captions.moved_directions`
      gives it; None when unparsed.
    - `reason`: why the clause is unparsed ("" when parsed).
    """

    text: str
    digit: int | None
    moved: np.ndarray | None
    reason: str = ""

    @property
    def parsed(self) -> bool:
        return self.digit is not None


def parse_clause(text: str) -> Clause:
    """A `Clause` from "digit D is moving|bouncing DIRECTION" or "digit D is standing still"."""
    text = " ".join(str(text).lower().split())
    m = _CLAUSE.fullmatch(text)
    if m is None:
        return Clause(text, None, None, "not of the form 'digit D is moving|bouncing <direction>' "
                                        "or 'digit D is standing still'")
    if not re.fullmatch(r"[0-9]", m.group(1)):
        return Clause(text, None, None, f"digit {m.group(1)!r} is not one of 0-9")
    moved = np.zeros((2, 2), bool)
    if m.group(2) is None:
        words = m.group(4).split(" and ")
        unknown = [w for w in words if w not in _WORDS]
        if unknown:
            return Clause(text, None, None, f"unknown direction word(s) {unknown}: expected left, right, up, down")
        if len(set(words)) != len(words):
            return Clause(text, None, None, f"a direction repeated in {m.group(4)!r}")
        for w in words:
            moved[_WORDS[w]] = True
        if m.group(3) == "bouncing" and not np.any(moved.all(axis=1)):
            return Clause(text, None, None, "'bouncing' needs both ways along an axis (e.g. 'left and right')")
    return Clause(text, int(m.group(1)), moved)


def parse_caption(caption: str) -> list[Clause]:
    """The clauses of a caption ("a", "a and b", "a, b and c"); [] for an empty caption.

    A clause starts at each "digit X is "; text that does not parse is one unparsed clause.
    A final full stop is ignored.
    """
    text = " ".join(str(caption).lower().split()).rstrip(".").strip()
    if not text:
        return []
    return [parse_clause(part) for part in _SPLIT.split(text)]


def unfamiliar_caption(caption: str, seen: Sequence[str]) -> str | None:
    """Why `caption` is unlike the captions `seen` (a model's training captions), or None.

    Clause by clause (`parse_caption`): a clause outside the caption grammar, a number of
    digits no seen caption has, or a motion ("moving right") that describes no digit in them.
    The digit itself is not checked (every digit occurs)."""
    def motion(c: Clause) -> str:
        return c.text.split(" is ", 1)[1]

    clauses, seen = parse_caption(caption), [parse_caption(c) for c in seen]
    bad = [c for c in clauses if not c.parsed]
    if bad:
        return f"{bad[0].text!r} is {bad[0].reason}"
    counts = sorted({len(s) for s in seen})
    if clauses and len(clauses) not in counts:
        return (f"the caption names {len(clauses)} digits; the training captions name "
                + " or ".join(map(str, counts)))
    motions = sorted({motion(c) for s in seen for c in s if c.parsed})
    new = [motion(c) for c in clauses if motion(c) not in motions]
    if new:
        return f"{new[0]!r} describes no digit in the training captions (they say: {', '.join(motions)})"
    return None


@dataclass(frozen=True)
class Track:
    """One digit followed through a video.

    - `frames`: int `[n]` frames it is seen in; `centres`: float `[n, 2]` (y, x) pixels;
      `classes`: int `[n]` predicted class (-1 where the component is not a single digit).
    - `label`: majority class over its single-digit frames (-1 if none).
    - `coverage`: fraction of the video's frames it is seen in.
    - `excursion`: float `[2, 2]`, [axis (x, y), (largest fall R⁻, largest rise R⁺)] in pixels.
    """

    frames: np.ndarray
    centres: np.ndarray
    classes: np.ndarray
    label: int
    coverage: float
    excursion: np.ndarray

    def moved(self, threshold: float) -> np.ndarray:
        """bool `[2, 2]`: excursion ≥ threshold, in the layout of `captions.moved_directions`."""
        return self.excursion >= threshold


def motion_satisfied(excursion, moved, trip: float, step: float) -> bool:
    """Does a track's motion fit a clause's `moved` `[2, 2]`? (module docstring, step 2)

    Every direction the clause names has an excursion ≥ `step` (τ₀), every axis it names has one
    ≥ `trip` (τ), and every direction it does not name has an excursion < τ.
    """
    e, m = np.asarray(excursion, np.float64), np.asarray(moved, bool)
    named = np.all(e[m] >= step) and np.all(e[~m] < trip)
    axes = np.all(e.max(axis=1)[m.any(axis=1)] >= trip)
    return bool(named and axes)


def excursions(c: np.ndarray) -> tuple[float, float]:
    """(R⁻, R⁺) = (max_{i<j} c_i − c_j, max_{i<j} c_j − c_i) of a sequence c `[n]` (0 if n < 2)."""
    c = np.asarray(c, np.float64)
    if c.size < 2:
        return 0.0, 0.0
    rise = float(np.max(c - np.minimum.accumulate(c)))
    fall = float(np.max(np.maximum.accumulate(c) - c))
    return fall, rise


def link_tracks(dets: list[DigitDetections], classes: list[np.ndarray], digit_size: int, *,
                link_fraction: float = LINK_FRACTION, max_gap: int = MAX_GAP) -> list[Track]:
    """Link one video's detections (one `DigitDetections` per frame) into `Track`s (module docstring, 1-2)."""
    reach = link_fraction * digit_size
    open_ = []  # [{"frames": [...], "det": [(frame, index)], "last": frame, "centre": (y, x)}]
    done = []
    for f, d in enumerate(dets):
        live = [t for t in open_ if f - t["last"] <= max_gap + 1]
        done += [t for t in open_ if f - t["last"] > max_gap + 1]
        taken, served = set(), set()
        if live and len(d):
            last = np.array([t["centre"] for t in live])
            for i, j in match_digits(last, d.centres):
                if np.linalg.norm(last[i] - d.centres[j]) <= reach * (f - live[i]["last"]):
                    live[i]["det"].append((f, j))
                    taken.add(j)
                    served.add(i)
        for i, t in enumerate(live):  # a merged component may carry on a second digit's track
            if i in served:
                continue
            for j in np.flatnonzero(~d.single):
                if int(j) in taken and np.linalg.norm(np.array(t["centre"]) - d.centres[j]) <= reach * (f - t["last"]):
                    t["det"].append((f, int(j)))
                    break
        for t in live:
            if t["det"][-1][0] == f:
                t["last"], t["centre"] = f, tuple(d.centres[t["det"][-1][1]])
        open_ = live + [{"det": [(f, j)], "last": f, "centre": tuple(d.centres[j])}
                        for j in range(len(d)) if j not in taken]
    tracks = []
    for t in done + open_:
        frames = np.array([f for f, _ in t["det"]], np.int64)
        centres = np.array([dets[f].centres[j] for f, j in t["det"]]).reshape(-1, 2)
        single = np.array([bool(dets[f].single[j]) for f, j in t["det"]])
        cls = np.where(single, [int(classes[f][j]) for f, j in t["det"]], -1)
        label = int(np.argmax(np.bincount(cls[single], minlength=10))) if single.any() else -1
        pts = centres[single] if single.sum() >= 2 else centres
        x, y = excursions(pts[:, 1]), excursions(pts[:, 0])
        tracks.append(Track(frames, centres, cls, label, len(set(frames.tolist())) / len(dets), np.array([x, y])))
    return tracks


def track_videos(videos, digit_size: int, *, classifier: DigitClassifier | None = None,
                 link_fraction: float = LINK_FRACTION, max_gap: int = MAX_GAP) -> list[list[Track]]:
    """The `Track`s of each video of `videos` `[B, T, H, W, C]` in [-1, 1]."""
    v = np.asarray(videos, np.float64)
    if v.ndim != 5:
        raise ValueError(f"videos must be [B, T, H, W, C] in [-1, 1], got shape {np.shape(videos)}")
    b, t = v.shape[:2]
    clf = load_digit_classifier() if classifier is None else classifier
    dets = detect_digits(v.reshape((b * t,) + v.shape[2:]), digit_size)
    sizes = [len(d) for d in dets]
    flat = clf.predict(np.concatenate([d.crops for d in dets])) if sum(sizes) else np.zeros(0, np.int64)
    classes = np.split(flat, np.cumsum(sizes)[:-1])
    return [link_tracks(dets[i * t:(i + 1) * t], classes[i * t:(i + 1) * t], digit_size,
                        link_fraction=link_fraction, max_gap=max_gap) for i in range(b)]


def best_assignment(ok: np.ndarray) -> np.ndarray:
    """bool `[k]`: which of k clauses are satisfied under a maximum matching of clauses to distinct
    tracks, ok `[k, n]` saying which track satisfies which clause (augmenting paths)."""
    ok = np.asarray(ok, bool)
    owner = {}  # track -> clause

    def augment(c, seen):
        for t in np.flatnonzero(ok[c]):
            if t not in seen:
                seen.add(t)
                if t not in owner or augment(owner[t], seen):
                    owner[t] = c
                    return True
        return False

    for c in range(ok.shape[0]):
        augment(c, set())
    out = np.zeros(ok.shape[0], bool)
    out[list(owner.values())] = True
    return out


@dataclass(frozen=True)
class VideoFidelity:
    """One video's scores: `clauses` (all, parsed or not); `digit`, `motion`, `both`: bool per
    parsed clause; `fidelity`, `digit_rate`, `motion_rate`: their means (nan if nothing parsed)."""

    caption: str
    clauses: list[Clause]
    digit: np.ndarray
    motion: np.ndarray
    both: np.ndarray

    @property
    def fidelity(self) -> float:
        return float(self.both.mean()) if self.both.size else float("nan")

    @property
    def digit_rate(self) -> float:
        return float(self.digit.mean()) if self.digit.size else float("nan")

    @property
    def motion_rate(self) -> float:
        return float(self.motion.mean()) if self.motion.size else float("nan")


def score_tracks(tracks: list[Track], caption: str, resolution: int, *, motion_fraction: float = MOTION_FRACTION,
                 step_fraction: float = STEP_FRACTION, min_coverage: float = MIN_COVERAGE) -> VideoFidelity:
    """Score one video's tracks against its caption (module docstring, steps 2-3)."""
    clauses = parse_caption(caption)
    parsed = [c for c in clauses if c.parsed]
    kept = [t for t in tracks if t.coverage >= min_coverage]
    trip, step = motion_fraction * resolution, step_fraction * resolution
    digit = np.array([[t.label == c.digit for t in kept] for c in parsed], bool).reshape(len(parsed), len(kept))
    motion = np.array([[motion_satisfied(t.excursion, c.moved, trip, step) for t in kept] for c in parsed],
                      bool).reshape(len(parsed), len(kept))
    return VideoFidelity(str(caption), clauses, best_assignment(digit), best_assignment(motion),
                         best_assignment(digit & motion))


@dataclass(frozen=True)
class FidelityReport:
    """Caption fidelity of a set: means over scored videos (≥ 1 parsed clause) ± standard error.

    `videos`: all videos; `scored`: those with a parsed clause; `clauses` / `unparsed`: clause
    counts; `per_video`: the `VideoFidelity` of each video.
    """

    fidelity: float
    fidelity_se: float
    digit: float
    digit_se: float
    motion: float
    motion_se: float
    videos: int
    scored: int
    clauses: int
    unparsed: int
    per_video: list[VideoFidelity]

    def as_dict(self) -> dict:
        """The summary numbers as a plain dict (no per-video list)."""
        return {k: v for k, v in self.__dict__.items() if k != "per_video"}


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray([v for v in x if np.isfinite(v)], np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")


def fidelity_report(per_video: list[VideoFidelity]) -> FidelityReport:
    """Means ± standard errors of the per-video rates."""
    f, d, m = (_mean_se([getattr(v, k) for v in per_video]) for k in ("fidelity", "digit_rate", "motion_rate"))
    return FidelityReport(f[0], f[1], d[0], d[1], m[0], m[1], len(per_video),
                          sum(v.both.size > 0 for v in per_video),
                          sum(len(v.clauses) for v in per_video),
                          sum(not c.parsed for v in per_video for c in v.clauses), per_video)


def score_captions(videos, captions, digit_size: int, *, classifier: DigitClassifier | None = None,
                     motion_fraction: float = MOTION_FRACTION, step_fraction: float = STEP_FRACTION,
                     link_fraction: float = LINK_FRACTION, min_coverage: float = MIN_COVERAGE) -> FidelityReport:
    """Caption fidelity of videos `[B, T, H, W, C]` in [-1, 1] against B captions (module docstring).

    **Arguments:**
    - `videos`: `[B, T, H, W, C]` in [-1, 1] (square frames of side = resolution).
    - `captions`: B strings, or one string for every video.
    - `digit_size`: the data's digit side in pixels (the tracker's crop window).
    - `classifier`: default `load_digit_classifier()`.
    - `motion_fraction`, `step_fraction`, `link_fraction`, `min_coverage`: τ / resolution,
      τ₀ / resolution, ρ / digit_size and the least fraction of frames a counted track is seen in.

    **Returns:** a `FidelityReport`.
    """
    v = np.asarray(videos)
    if v.ndim != 5:
        raise ValueError(f"videos must be [B, T, H, W, C] in [-1, 1], got shape {v.shape}")
    captions = [captions] * v.shape[0] if isinstance(captions, str) else [str(c) for c in captions]
    if len(captions) != v.shape[0]:
        raise ValueError(f"need one caption per video: {v.shape[0]} videos, {len(captions)} captions")
    tracks = track_videos(v, digit_size, classifier=classifier, link_fraction=link_fraction)
    return fidelity_report([score_tracks(t, c, v.shape[2], motion_fraction=motion_fraction, step_fraction=step_fraction,
                                         min_coverage=min_coverage) for t, c in zip(tracks, captions)])


def shuffled(captions: list[str], seed: int) -> list[str]:
    """The captions moved along a random cycle: no video keeps its own caption (N >= 2)."""
    order = np.random.default_rng(seed).permutation(len(captions))
    out = list(captions)
    for a, b in zip(order, np.roll(order, -1)):
        out[a] = captions[b]
    return out


def preset_data(preset: str = "mnist-small-text") -> dict:
    """Moving MNIST settings a preset trains on: frames, resolution and `TRAIN_DATA`."""
    from vdm_ref.configs import get_preset

    u = get_preset(preset).unet
    data = dict(TRAIN_DATA)
    data["digit_size"] = min(int(data["digit_size"]), u.image_size)
    return {"num_frames": u.frames, "resolution": u.image_size, "frameskip": u.frameskip, **data}


def reference_fidelity(num_videos: int, *, seed: int = 1234, classifier: DigitClassifier | None = None,
                       **data) -> dict[str, FidelityReport]:
    """Real Moving MNIST test-split clips scored with their own captions (the ceiling) and with
    the captions shuffled among them (the floor). `data`: `MovingMNIST` settings (default
    `preset_data()`). Returns {"own captions": report, "shuffled captions": report}."""
    from vdm_ref.support.data import MovingMNIST

    data = {**preset_data(), **data}
    ds = MovingMNIST(num_videos, split="test", seed=seed, **data)
    videos = ds.batch(np.arange(num_videos))
    tracks = track_videos(videos, ds.digit_size, classifier=classifier)
    out = {}
    for name, caps in (("own captions", ds.captions), ("shuffled captions", shuffled(ds.captions, seed))):
        out[name] = fidelity_report([score_tracks(t, c, ds.resolution) for t, c in zip(tracks, caps)])
    return out


def load_captions(npz_path: str | Path, videos: int, captions: str | None) -> list[str]:
    """B captions for the videos of `npz_path`: from the JSON file `captions` (a list of B strings,
    or one string), else from the .npz ("captions" or "caption"), else from the JSON written beside
    it (same stem, keys "captions" or "caption"). A single caption applies to every video."""
    npz_path = Path(npz_path)
    if captions is not None:
        found, where = json.loads(Path(captions).read_text()), str(captions)
    else:
        found, where = None, str(npz_path)
        with np.load(npz_path) as z:
            for key in ("captions", "caption"):
                if key in z.files:
                    found = z[key].tolist()
                    break
        side = npz_path.with_suffix(".json")
        if found is None and side.is_file():
            meta = json.loads(side.read_text())
            found = next((meta[k] for k in ("captions", "caption") if isinstance(meta, dict) and k in meta), None)
            where = str(side)
        if found is None:
            raise ValueError(f"{npz_path}: no captions stored (no 'captions'/'caption' in the .npz or in "
                             f"{side.name}); pass --captions FILE.json (a JSON list of {videos} captions)")
    if isinstance(found, str):
        found = [found] * videos
    if not isinstance(found, list) or not all(isinstance(c, str) for c in found):
        raise ValueError(f"{where}: expected a caption string or a list of caption strings")
    if len(found) != videos:
        raise ValueError(f"{where}: {len(found)} captions for {videos} videos in {npz_path}")
    return found


def _row(name: str, r: FidelityReport) -> str:
    return (f"| {name} | {r.scored}/{r.videos} | {r.fidelity:.3f} ± {r.fidelity_se:.3f} | {r.digit:.3f} ± "
            f"{r.digit_se:.3f} | {r.motion:.3f} ± {r.motion_se:.3f} | {r.unparsed}/{r.clauses} |")


def main(argv=None) -> None:
    """Print a Markdown table of caption fidelity: each .npz given, then real clips (--reference N)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("videos", nargs="*", help=".npz files with 'video' [B, T, H, W, C] in [-1, 1] (cli.py sample)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--captions", default=None, help="JSON file: a list of B captions (or one caption for all)")
    src.add_argument("--from-npz", action="store_true",
                     help="captions stored with the videos: 'captions'/'caption' in the .npz or its .json")
    p.add_argument("--digit-size", type=int, default=None, help="digit side in pixels (default: the preset's)")
    p.add_argument("--reference", type=int, default=0, metavar="N",
                   help="also score N real clips with their own and with shuffled captions")
    p.add_argument("--preset", default="mnist-small-text", help="data settings of the reference clips")
    p.add_argument("--digits", type=int, nargs="+", default=None, help="reference: digits per clip (or min max)")
    p.add_argument("--seed", type=int, default=1234, help="reference: data seed (test split)")
    a = p.parse_args(argv)
    if not a.videos and not a.reference:
        p.error("give VIDEOS.npz files (with --captions or --from-npz) and/or --reference N")
    if a.videos and not (a.captions or a.from_npz):
        p.error("scoring videos needs their captions: --captions FILE.json or --from-npz")
    data = preset_data(a.preset)
    if a.digit_size is not None:
        data["digit_size"] = a.digit_size
    if a.digits:
        data["num_digits"] = a.digits[0] if len(a.digits) == 1 else tuple(a.digits[:2])
    clf = load_digit_classifier()
    rows = {}
    for path in a.videos:
        with np.load(path) as z:
            video = z["video"] if "video" in z.files else z["videos"]
        try:
            caps = load_captions(path, len(video), a.captions)
        except ValueError as e:
            p.error(str(e))
        data.update(num_frames=video.shape[1], resolution=video.shape[2])
        rows[path] = score_captions(video, caps, data["digit_size"], classifier=clf)
    if a.reference:
        rows.update({f"real clips, {k}": r for k, r in
                     reference_fidelity(a.reference, seed=a.seed, classifier=clf, **data).items()})
    r = data["resolution"]
    print(f"caption fidelity: τ = {MOTION_FRACTION * r:g} px, τ₀ = {STEP_FRACTION * r:g} px, "
          f"ρ = {LINK_FRACTION * data['digit_size']:g} px/frame, digit size {data['digit_size']} px")
    print("| videos | scored | fidelity (digit & motion) | digit | motion | unparsed clauses |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(_row(name, r))


if __name__ == "__main__":
    main()
