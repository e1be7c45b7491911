"""FVD of the Table 6 extension runs (the `extend` task's .npz files), on the real I3D.

    python -m scripts.conditional_truth.extend_fvd --runs /tmp/conditional_runs/main --out docs/assets/conditional/extend_fvd.json

The 32-frame videos of every seed are pooled per method (2 seeds x 16 = 32 videos) and compared
with 32 real 32-frame clips of the model's Moving MNIST (MNIST test digits, data seed 1234), with
FVD over the whole set and over disjoint halves (mean ± std), as `python cli.py evaluate` reports
it; a second real set (data seed 1235) against the first gives the floor at this N. The logits
are those of `vdm_fast.metrics.i3d_embeddings` (DeepMind's Kinetics-400 weights, SHA-256-checked).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METHODS = ("reconstruction, w_r = 5", "replacement")


def pooled_videos(runs: Path) -> dict[str, np.ndarray]:
    """{method: [N, 32, H, W, C]} over every extend_seed*.npz in `runs` (untagged runs only)."""
    files = sorted(runs.glob("extend_seed*.npz"))
    if not files:
        raise SystemExit(f"error: no extend_seed*.npz in {runs}: run `python -m scripts.conditional_truth run extend` first")
    sets = {m: [] for m in METHODS}
    for f in files:
        with np.load(f) as z:
            for m in METHODS:
                sets[m].append(z[m])
    return {m: np.concatenate(v) for m, v in sets.items()}


def main(argv=None) -> dict:
    from vdm_fast.evaluation import fvd_with_spread, i3d_input, reference_clips
    from vdm_fast.generation import load_model
    from vdm_fast.metrics import i3d_embeddings, load_i3d

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="/tmp/conditional_runs/main", help="folder of the extend task's .npz files")
    p.add_argument("--checkpoint", default="checkpoints/mnist-small-eps", help="the model the runs extended (the ε model the doc's figures used)")
    p.add_argument("--splits", type=int, default=2, help="disjoint parts for the FVD spread")
    p.add_argument("--out", default="docs/assets/conditional/extend_fvd.json")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    sets = pooled_videos(Path(a.runs))
    n, frames = next(iter(sets.values())).shape[:2]
    model = load_model(a.checkpoint)
    net = load_i3d()

    def logits(videos):  # the samplers' last step is not clipped: values a few % past ±1 are clipped here
        videos = np.clip(videos, -1.0, 1.0)
        return np.asarray(i3d_embeddings(i3d_input(videos)[0], model=net, batch_size=8).logits)

    real = logits(reference_clips(model, n, frames, seed=1234)[0])
    result = {"videos_per_method": int(n), "frames": int(frames), "runs": str(a.runs), "checkpoint": a.checkpoint,
              "real_vs_real": fvd_with_spread(real, logits(reference_clips(model, n, frames, seed=1235)[0]), a.splits)}
    for m, v in sets.items():
        result[m] = fvd_with_spread(real, logits(v), a.splits)
        print(f"{m}: FVD {result[m]['fvd']:.1f} (halves {result[m]['fvd_split_mean']:.1f} ± "
              f"{result[m]['fvd_split_std']:.1f})", flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"real vs real: FVD {result['real_vs_real']['fvd']:.1f}; {result['seconds']:.0f} s")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
