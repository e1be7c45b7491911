"""Captions that describe a Moving MNIST clip's content, in the style of Sync-DRAW's text-conditioned
Moving MNIST (Mittal, Marwah, Balasubramanian 2017).

Grammar (all lower case, no final full stop):

    caption     := phrase                               (one digit)
                 | phrase " and " phrase                (two digits)
                 | phrase ", " phrase " and " phrase    (three digits)
    phrase      := "digit " D " is " verb " " direction | "digit " D " is standing still"
    D           := "0" | ... | "9"
    verb        := "moving" | "bouncing"                ("bouncing" only when the digit turns back)
    direction   := horizontal | vertical | horizontal " and " vertical
    horizontal  := "left" | "right" | "left and right"  (what the clip shows along x)
    vertical    := "up" | "down" | "up and down"        (image y grows downwards: +y is "down")

Examples: "digit 3 is moving left and right",
"digit 7 is bouncing up and down and digit 1 is moving right".

The direction words come from the clip itself: from the signs of the digit's frame-to-frame
displacement along each axis (`moved_directions`), so a digit that hits a wall during the clip is
described as going both ways along that axis.
"""

from __future__ import annotations

__mirror__ = False

import numpy as np

HORIZONTAL = {(True, False): "left", (False, True): "right", (True, True): "left and right"}
VERTICAL = {(True, False): "up", (False, True): "down", (True, True): "up and down"}
VERBS = ("moving", "bouncing")


def moved_directions(positions: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Which ways each digit moved along each axis during a clip.

    **Arguments:**
    - `positions`: `[T, k, 2]`, the (x, y) top-left corner of each of k digits in each frame, in
      image coordinates (y grows downwards).
    - `eps`: displacements with |d| <= eps pixels count as no motion.

    **Returns:** bool `[k, 2, 2]`: `[digit, axis (x, y), (negative, positive)]`, i.e. for x
    (left, right) and for y (up, down).
    """
    positions = np.asarray(positions, np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 2:
        raise ValueError(f"positions must be [T, k, 2], got shape {positions.shape}")
    d = np.diff(positions, axis=0)  # [T-1, k, 2]
    negative = np.any(d < -eps, axis=0)
    positive = np.any(d > eps, axis=0)
    return np.stack([negative, positive], axis=-1)


def turns_back(moved: np.ndarray) -> bool:
    """True if a digit moved both ways along some axis (it bounced off a wall). moved: [2, 2]."""
    moved = np.asarray(moved, bool)
    return bool(np.any(moved[:, 0] & moved[:, 1]))


def direction_phrase(moved: np.ndarray) -> str | None:
    """"left", "up and down", "right and down", ... from one digit's moved `[2, 2]`; None if still."""
    moved = np.asarray(moved, bool)
    parts = [
        table[(bool(m[0]), bool(m[1]))]
        for table, m in ((HORIZONTAL, moved[0]), (VERTICAL, moved[1]))
        if m[0] or m[1]
    ]
    return " and ".join(parts) if parts else None


def digit_phrase(label: int, moved: np.ndarray, verb: str = "moving") -> str:
    """One digit's phrase, e.g. "digit 3 is moving left and right".

    **Arguments:**
    - `label`: the digit class 0-9.
    - `moved`: bool `[2, 2]` from `moved_directions` (axis x/y; negative/positive).
    - `verb`: "moving" or "bouncing"; "bouncing" needs the digit to turn back along some axis.
    """
    if not 0 <= int(label) <= 9:
        raise ValueError(f"digit label must be in 0..9, got {label}")
    if verb not in VERBS:
        raise ValueError(f"verb must be one of {VERBS}, got {verb!r}")
    direction = direction_phrase(moved)
    if direction is None:
        return f"digit {int(label)} is standing still"
    if verb == "bouncing" and not turns_back(moved):
        raise ValueError(f"'bouncing' needs a digit that turns back, but digit {label} only moves {direction}")
    return f"digit {int(label)} is {verb} {direction}"


def join_phrases(phrases: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if not phrases:
        raise ValueError("a caption needs at least one digit phrase")
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def clip_caption(labels, moved: np.ndarray, verbs=None) -> str:
    """The caption of a clip with k digits.

    **Arguments:**
    - `labels`: k digit classes.
    - `moved`: bool `[k, 2, 2]` from `moved_directions`.
    - `verbs`: k verbs ("moving"/"bouncing"); default all "moving".

    **Returns:** e.g. "digit 7 is bouncing up and down and digit 1 is moving right".
    """
    labels = [int(v) for v in labels]
    moved = np.asarray(moved, bool)
    if moved.shape != (len(labels), 2, 2):
        raise ValueError(f"moved must be [k, 2, 2] with k = {len(labels)} labels, got shape {moved.shape}")
    verbs = ["moving"] * len(labels) if verbs is None else list(verbs)
    if len(verbs) != len(labels):
        raise ValueError(f"need one verb per digit: {len(labels)} labels, {len(verbs)} verbs")
    return join_phrases([digit_phrase(c, m, v) for c, m, v in zip(labels, moved, verbs)])
