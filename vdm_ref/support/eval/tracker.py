"""Finding the digits of Moving MNIST frames: connected ink components, their centres of mass,
and a fixed-size crop around each for the digit classifier (NumPy, backend-free).

A frame is in model range [-1, 1] (background −1, ink +1). Ink is ι = clip((x + 1)/2, 0, 1).
A digit is a connected component (8-neighbourhood) of the mask ι > `threshold` (0.3) after a dilation
by `dilate` pixels (which joins the strokes of a digit that a generated frame draws with small
gaps), keeping components of at least `min_area` mask pixels. Its position is the ink-weighted
centre of mass over the component; its crop is the `digit_size` × `digit_size` window of ι
centred there, showing only that component's ink (zero elsewhere and outside the frame), resized to `CROP` × `CROP` by area averaging — the same
procedure `digits.render_digit_crops` applies to MNIST digits when training the classifier.
Components whose union fits in one digit's box (digit_size + 2 px) are grouped as fragments of
one digit (a generated digit drawn with gaps); two digits that overlap form one component (one
detection), flagged `single = False` when its ink spans more than a digit's box: the coherence
measure then judges it by position only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__mirror__ = False

#: Side of the classifier's input crops.
CROP = 16
#: Ink level ι above which a pixel is ink (0.3: the thin strokes of digits resized to 10–14 px
#: rarely reach 0.5).
THRESHOLD = 0.3


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """R [n_out, n_in] resizing a signal of n_in samples to n_out by area averaging.

    Output sample j covers the input interval [j n_in/n_out, (j+1) n_in/n_out); R[j, i] is the
    fraction of that interval inside input pixel i. Rows sum to 1. A 2-D image resizes as R_h X Rᵀ_w.
    """
    edges_out = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges_out[:-1, None], edges_out[1:, None]
    i = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def resize_crops(crops: np.ndarray, size: int = CROP) -> np.ndarray:
    """[N, s, s] -> [N, size, size] by `resize_matrix` (area averaging), float32."""
    s = crops.shape[-1]
    if s == size:
        return crops.astype(np.float32)
    r = resize_matrix(s, size)
    return np.einsum("ij,njk,lk->nil", r, crops, r).astype(np.float32)


def _max_filter(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of [N, H, W] by a (2r+1)² square."""
    if radius <= 0:
        return mask
    n, h, w = mask.shape
    p = np.pad(mask, ((0, 0), (radius, radius), (radius, radius)))
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= p[:, dy : dy + h, dx : dx + w]
    return out


def connected_components(mask: np.ndarray) -> np.ndarray:
    """Labels of the 8-connected components of a boolean mask [N, H, W] (frames independent).

    Returns int64 [N, H, W]: 0 on the background; on a component, 1 + the flat index (over all
    N·H·W pixels) of its first pixel, so labels are unique across frames. Vectorised label
    propagation (neighbourhood minimum) with pointer jumping; no SciPy needed.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be [N, H, W], got shape {mask.shape}")
    n, h, w = mask.shape
    big = np.iinfo(np.int64).max
    idx = np.arange(n * h * w, dtype=np.int64).reshape(n, h, w)
    lab = np.where(mask, idx, big)
    while True:
        p = np.pad(lab, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        nb = lab.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(nb, p[:, dy : dy + h, dx : dx + w], out=nb)
        nb = np.where(mask, nb, big)
        flat = nb.reshape(-1)
        on = flat != big
        for _ in range(4):  # pointer jumping: a label is a pixel index; follow it to that pixel's label
            flat[on] = flat[flat[on]]
        if np.array_equal(nb, lab):
            break
        lab = nb
    return np.where(mask, lab + 1, 0)


@dataclass(frozen=True)
class DigitDetections:
    """The digits found in one frame.

    - `centres`: float64 [k, 2], (y, x) ink-weighted centre of mass, in pixels.
    - `areas`: int64 [k], mask pixels of each component.
    - `ink`: float64 [k], total ink of each component.
    - `crops`: float32 [k, CROP, CROP], the classifier's inputs.
    - `single`: bool [k], the component fits in a (digit_size + slack)² box, so it can be one
      digit; False for digits merged by overlap (their crop is not one digit to classify).
    """

    centres: np.ndarray
    areas: np.ndarray
    ink: np.ndarray
    crops: np.ndarray
    single: np.ndarray

    def __len__(self) -> int:
        return int(self.areas.shape[0])


def _frames_2d(frames) -> np.ndarray:
    f = np.asarray(frames, np.float64)
    if f.ndim == 4:  # [N, H, W, C]
        f = f.mean(axis=-1)
    if f.ndim != 3:
        raise ValueError(f"frames must be [N, H, W] or [N, H, W, C], got shape {np.shape(frames)}")
    return f


def extract_crops(ink: np.ndarray, centres: np.ndarray, digit_size: int) -> np.ndarray:
    """digit_size² windows of one ink frame [H, W] centred at `centres` [k, 2], as [k, CROP, CROP]."""
    s = int(digit_size)
    padded = np.pad(ink, s)
    out = np.empty((len(centres), s, s))
    for j, (cy, cx) in enumerate(centres):
        y0 = int(np.rint(cy - (s - 1) / 2.0)) + s
        x0 = int(np.rint(cx - (s - 1) / 2.0)) + s
        out[j] = padded[y0 : y0 + s, x0 : x0 + s]
    return resize_crops(out)


def detect_digits(frames, digit_size: int, *, threshold: float = THRESHOLD, dilate: int = 1,
                  min_area: int | None = None, single_slack: int = 2) -> list[DigitDetections]:
    """The digits of each frame (see the module docstring).

    **Arguments:**
    - `frames`: [N, H, W] or [N, H, W, C] in [-1, 1] (channels averaged).
    - `digit_size`: side of a digit in pixels (the dataset's `digit_size`): the crop window.
    - `threshold`: ink level ι above which a pixel is ink.
    - `dilate`: dilation radius before labelling (joins nearby strokes).
    - `min_area`: smallest component kept, in ink pixels (ι > threshold); default digit_size² / 24.
    - `single_slack`: a component whose ink spans more than digit_size + this many pixels (in
      height or width) is marked as not a single digit.

    **Returns:** one `DigitDetections` per frame.
    """
    f = _frames_2d(frames)
    if int(digit_size) < 2:
        raise ValueError(f"digit_size must be >= 2 pixels, got {digit_size}")
    min_area = max(4, int(digit_size) ** 2 // 24) if min_area is None else int(min_area)
    ink = np.clip((f + 1.0) / 2.0, 0.0, 1.0)
    core = ink > threshold
    grown = _max_filter(core, int(dilate))
    grown_labels = connected_components(grown)
    labels = np.where(core, grown_labels, 0)  # components measured on the ink itself
    n, h, w = f.shape
    flat_lab = labels.reshape(n, -1)
    out = []
    ys, xs = np.divmod(np.arange(h * w), w)
    box = int(digit_size) + int(single_slack)
    for i in range(n):
        lab = flat_lab[i]
        ids = np.unique(lab[lab > 0])
        groups = []  # fragments of one digit: components whose union fits in a digit's box
        if ids.size:
            pos = np.searchsorted(ids, lab[lab > 0])
            wts = ink[i].reshape(-1)[lab > 0]
            area = np.bincount(pos, minlength=ids.size)
            mass = np.bincount(pos, weights=wts, minlength=ids.size)
            my = np.bincount(pos, weights=wts * ys[lab > 0], minlength=ids.size)
            mx = np.bincount(pos, weights=wts * xs[lab > 0], minlength=ids.size)
            big = np.iinfo(np.int64).max
            y_lo, x_lo = np.full(ids.size, big), np.full(ids.size, big)
            y_hi, x_hi = np.full(ids.size, -1), np.full(ids.size, -1)
            np.minimum.at(y_lo, pos, ys[lab > 0])
            np.minimum.at(x_lo, pos, xs[lab > 0])
            np.maximum.at(y_hi, pos, ys[lab > 0])
            np.maximum.at(x_hi, pos, xs[lab > 0])
            for k in np.argsort(-area, kind="stable"):
                for g in groups:
                    if (max(g["y_hi"], y_hi[k]) - min(g["y_lo"], y_lo[k]) < box
                            and max(g["x_hi"], x_hi[k]) - min(g["x_lo"], x_lo[k]) < box):
                        break
                else:
                    g = {"ids": [], "area": 0, "mass": 0.0, "my": 0.0, "mx": 0.0,
                         "y_lo": y_lo[k], "y_hi": y_hi[k], "x_lo": x_lo[k], "x_hi": x_hi[k]}
                    groups.append(g)
                g["ids"].append(ids[k])
                g["area"] += int(area[k])
                g["mass"] += mass[k]
                g["my"] += my[k]
                g["mx"] += mx[k]
                g["y_lo"], g["y_hi"] = min(g["y_lo"], y_lo[k]), max(g["y_hi"], y_hi[k])
                g["x_lo"], g["x_hi"] = min(g["x_lo"], x_lo[k]), max(g["x_hi"], x_hi[k])
        groups = [g for g in groups if g["area"] >= min_area]
        centres = np.array([[g["my"] / g["mass"], g["mx"] / g["mass"]] for g in groups]).reshape(-1, 2)
        # each crop shows its own component(s) only (the other digits' ink masked out)
        crops = np.zeros((len(groups), CROP, CROP), np.float32)
        for j, g in enumerate(groups):
            own = ink[i] * np.isin(grown_labels[i], g["ids"])
            crops[j] = extract_crops(own, centres[j][None], digit_size)[0]
        extent = np.array([max(g["y_hi"] - g["y_lo"], g["x_hi"] - g["x_lo"]) + 1 for g in groups], np.int64)
        out.append(DigitDetections(centres, np.array([g["area"] for g in groups], np.int64),
                                   np.array([g["mass"] for g in groups], np.float64), crops, extent < box + 1))
    return out
