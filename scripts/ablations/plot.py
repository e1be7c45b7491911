"""Plots of the small-scale ablations from docs/assets/ablations/*.json (written by evaluate_all.py).

    python scripts/ablations/plot.py      # -> docs/assets/ablations/ablations.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "docs/assets/ablations"


def load(table):
    return {p.stem.split("_", 1)[1]: json.loads(p.read_text()) for p in sorted(OUT.glob(f"{table}_*.json"))}


def main():
    t4, t5, t6 = load("table4"), load("table5"), load("table6")
    panels = [(t, name) for t, name in ((t4, "t4"), (t5, "t5"), (t6, "t6")) if t]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (data, name) in zip(axes[0], panels):
        rows = []
        for key, res in data.items():
            for r in res["runs"]:
                floor = res.get("real_vs_real", {}).get(str(r["length"]), {}).get("fvd")
                rows.append((key, r, floor))
        if name == "t4":
            rows.sort(key=lambda x: (x[0].partition("-")[2], int(x[0].replace("joint", "").split("-")[0])))
            xs = [int(k.replace("joint", "").split("-")[0]) for k, _, _ in rows]
            ax.set_xlabel("independent image frames per video")
            ax.set_title("Table 4 (small): joint training")
        elif name == "t5":
            rows.sort(key=lambda x: (x[0].partition("-")[2], float(x[0][1:].split("-")[0])))
            xs = [float(k[1:].split("-")[0]) for k, _, _ in rows]
            ax.set_xlabel("classifier-free guidance weight w")
            ax.set_title("Table 5 (small): guidance")
        else:
            xs = list(range(len(rows)))
            ax.set_xticks(xs, [r["method"] for _, r, _ in rows])
            ax.set_title("Table 6 (small): 4x extension")
            ax.set_xlim(-0.5, len(xs) - 0.5)
        y = [r["fvd"] for _, r, _ in rows]
        lo = [r.get("fvd_split_mean", r["fvd"]) - r.get("fvd_split_std", 0) for _, r, _ in rows]
        hi = [r.get("fvd_split_mean", r["fvd"]) + r.get("fvd_split_std", 0) for _, r, _ in rows]
        seeds = [k.partition("-")[2] or "s0" for k, _, _ in rows]
        for sd in dict.fromkeys(seeds):
            idx = [i for i, x in enumerate(seeds) if x == sd]
            ax.plot([xs[i] for i in idx], [y[i] for i in idx], "o-" if name != "t6" else "o",
                    label=f"FVD, all N={rows[0][1]['num_samples']}, sampling seed {sd[1:]}")
        ax.vlines(xs, lo, hi, color="gray", label="split FVD mean ± std")
        if rows[0][2] is not None:
            ax.axhline(rows[0][2], color="k", ls="--", lw=1, label="real vs real")
        ax.set_ylabel("FVD (I3D logits)")
        ax.legend(fontsize=7)
    fig.suptitle("vdm ablations at small scale: 16x16 Moving MNIST, 400 training steps, 2-core CPU", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "ablations.png", dpi=110)
    print(OUT / "ablations.png")


if __name__ == "__main__":
    main()
