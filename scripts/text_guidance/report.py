"""The Markdown table over seeds, from the runs' JSON files alone (DIR/seed<S>.json).

One line per guidance weight w (ascending); a cell is the mean over seeds ± half the range of the
per-seed values (with two seeds: half their difference; one seed: the value). Then the real
clips: with their own captions (the fidelity ceiling; FVD: real against real clips of another
data seed, the floor of FVD at this N; diversity: real clips of the diversity caption) and with
shuffled captions (the fidelity floor).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: What `run` writes in its JSON's "script" field: the files `load_runs` reads, and the only
#: files `run` overwrites.
SCRIPT = "scripts.text_guidance"

#: (header, getter of a row dict, digits)
COLUMNS = [
    ("fidelity", lambda r: r.get("fidelity"), 3),
    ("digit rate", lambda r: r.get("digit"), 3),
    ("motion rate", lambda r: r.get("motion"), 3),
    ("FVD", lambda r: r.get("fvd"), 1),
    ("diversity: pixel RMS", lambda r: (r.get("diversity") or {}).get("rms"), 3),
    ("diversity: centre spread (px)", lambda r: (r.get("diversity") or {}).get("centre_spread"), 2),
    ("diversity: caption fidelity", lambda r: (r.get("diversity") or {}).get("fidelity"), 3),
    ("s / video (warm)", lambda r: r.get("seconds_per_video_warm"), 3),
]


def load_runs(folder) -> list[dict]:
    """The results of `run` in folder (seed<S>.json with "script" = SCRIPT), sorted by seed."""
    runs = []
    for p in sorted(Path(folder).glob("seed*.json")):
        r = json.loads(p.read_text())
        if isinstance(r, dict) and r.get("script") == SCRIPT:
            runs.append(r)
    return sorted(runs, key=lambda r: r["seed"])


def spread(values, digits: int) -> str:
    """'mean ± half-range' of the finite per-seed values ('–' if none, the value if one)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {(v.max() - v.min()) / 2:.{digits}f}"


def _line(name, rows, seconds="–") -> str:
    return "| " + " | ".join([name, *(spread([get(r) for r in rows], d) for _, get, d in COLUMNS), seconds]) + " |"


def table(runs: list[dict]) -> str:
    """The table: one line per w, then the real-clip ceiling and floor lines."""
    lines = ["| w | " + " | ".join(h for h, _, _ in COLUMNS) + " | sampling s (per seed) |",
             "|---|" + "---:|" * (len(COLUMNS) + 1)]
    weights = sorted({row["w"] for r in runs for row in r["rows"].values()})
    for w in weights:
        got = [row for r in runs for row in r["rows"].values() if row["w"] == w]
        secs = " / ".join(f"{row['seconds']:.0f}" for row in got)
        lines.append(_line(f"{w:g}", got, secs))
    ceiling = [{**r["real"]["ceiling"], **r["real"].get("fvd_real_vs_real", {}),
                "diversity": r["real"].get("diversity")} for r in runs]
    lines.append(_line("real clips, own captions (ceiling)", ceiling))
    lines.append(_line("real clips, shuffled captions (floor)", [r["real"]["floor"] for r in runs]))
    return "\n".join(lines)


def summary(runs: list[dict]) -> str:
    """What was run: model, N, seeds, steps, the diversity caption and K, machine, wall time, load."""
    r0 = runs[0]
    walls = ", ".join(f"seed {r['seed']}: {r['wall_seconds'] / 60:.1f} min"
                      + ("" if r.get("complete") else " (incomplete)") for r in runs)
    loads = [x for r in runs for x in (r["load_start"], r["load_end"])]
    text = (f"{r0['model']}; N = {r0['videos']} real clips of the model's Moving MNIST (test split, data seed "
            f"{r0['data']['data_seed']}), one video per clip's caption; seeds {[r['seed'] for r in runs]}, "
            f"{r0['steps']} sampling steps, batches of {r0['batch_size']}. Diversity: K = {r0['diversity_videos']} "
            f"videos of {r0['diversity_caption']!r} per w and seed. {r0['machine']}, {r0['date']}; wall time {walls} "
            f"(1-min load average {min(loads):.1f}–{max(loads):.1f}).")
    if not r0["fvd"]:
        text += " FVD not measured (--no-fvd)."
    else:
        text += f" I3D input: {r0['real'].get('i3d_input', 'as is')}."
    if r0["real"].get("diversity_note"):
        text += f" Real diversity: {r0['real']['diversity_note']}."
    return text


def markdown(folder) -> str:
    """The heading, the table and the summary line; a line saying so if folder holds no runs."""
    runs = load_runs(folder)
    if not runs:
        return f"no results of {SCRIPT} in {folder} (run `python -m {SCRIPT} run --out-dir {folder}` first)"
    return "\n".join(["### Table 5 (small): classifier-free guidance on captions", "", table(runs), "",
                      summary(runs), ""])
