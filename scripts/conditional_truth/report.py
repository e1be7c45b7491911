"""Tables over seeds and image strips from the runs' JSON and NPZ files.

A table cell is the mean over seeds of the per-seed mean over videos, ± half the range of the
per-seed means (with two seeds: half their difference). Strips show, for the first videos of the
lowest seed, one row per method between the condition and the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# --- tables -------------------------------------------------------------------------------------


def load_runs(folder) -> dict[str, list[dict]]:
    """{task: [result per seed, ...] sorted by seed} from folder/*.json.

    Files of one task and seed are merged (untagged first): rows and videos ("npz": the list of
    .npz files) are joined, wall seconds added, the load range widened.
    """
    merged: dict[tuple, dict] = {}
    files = sorted(Path(folder).glob("*.json"), key=lambda p: (json.loads(p.read_text()).get("tag", ""), p.name))
    for p in files:
        r = json.loads(p.read_text())
        r["npz"] = [str(p.with_suffix(".npz"))]
        key = (r["task"], r["seed"])
        if key not in merged:
            merged[key] = r
            continue
        m = merged[key]
        m["rows"].update(r["rows"])
        m["npz"] += r["npz"]
        m["wall_seconds"] += r["wall_seconds"]
        m["load_start"], m["load_end"] = min(m["load_start"], r["load_start"]), max(m["load_end"], r["load_end"])
    runs: dict[str, list[dict]] = {}
    for (task, _), r in sorted(merged.items(), key=lambda kv: kv[0][1]):
        runs.setdefault(task, []).append(r)
    return runs


def spread(values, digits: int = 2) -> str:
    """'mean ± half-range' of per-seed values (just the value for one seed)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {(v.max() - v.min()) / 2:.{digits}f}"


def table(runs: list[dict], columns, where: str = "rows", truth_row: str | None = None) -> str:
    """A Markdown table: one line per row name (in the first run's order), `columns` =
    [(header, key, digits)], each cell `spread` over the runs; a real-clip line from 'truth'."""
    heads = [h for h, _, _ in columns]
    lines = ["| " + " | ".join(["method", *heads, "seconds (per seed)"]) + " |",
             "|---|" + "---:|" * (len(heads) + 1)]
    if truth_row is not None:
        cells = [spread([r["truth"].get(k) for r in runs], d) if k in runs[0]["truth"] else "–" for _, k, d in columns]
        lines.append("| " + " | ".join([truth_row, *cells, "–"]) + " |")
    for name in runs[0][where]:
        got = [r[where][name] for r in runs if name in r[where]]
        cells = [spread([g.get(k) for g in got], d) for _, k, d in columns]
        secs = " / ".join(f"{g['seconds']:.0f}" for g in got) if "seconds" in got[0] else "–"
        lines.append("| " + " | ".join([name, *cells, secs]) + " |")
    return "\n".join(lines)


def summary(runs: list[dict]) -> str:
    """One line: videos per seed, seeds, steps, wall time per seed (all of the seed's files), and the
    range of the load average read at their starts and ends."""
    r0 = runs[0]
    walls = ", ".join(f"seed {r['seed']}: {r['wall_seconds'] / 60:.1f} min (1-min load average "
                      f"{min(r['load_start'], r['load_end']):.1f}–{max(r['load_start'], r['load_end']):.1f} "
                      "at the runs' starts and ends)" for r in runs)
    return (f"N = {r0['videos']} videos per seed, seeds {[r['seed'] for r in runs]}, {r0['steps']} sampling steps; "
            f"wall time {walls}")


SR_COLUMNS = [("PSNR vs real clip (dB)", "psnr", 2), ("digit agreement", "digit_agreement", 3),
              ("label accuracy", "label_accuracy", 3), ("consistency PSNR (dB)", "consistency_psnr", 2)]
TEMPORAL_COLUMNS = [("PSNR unknown frames (dB)", "psnr_unknown", 2), ("digit agreement", "digit_agreement", 3),
                    ("label accuracy", "label_accuracy", 3), ("carry-over", "carry_over", 3),
                    ("same digit", "same_digit", 3)]
EXTEND_COLUMNS = [("boundary coherence", "boundary", 3), ("within-block", "within", 3),
                  ("identity kept (boundary)", "identity_boundary", 3), ("identity kept (within)", "identity_within", 3),
                  ("median jump boundary (px)", "median_jump_boundary", 2),
                  ("median jump within (px)", "median_jump_within", 2)]


def sr_order(name: str):
    """Baselines first (as run), then the Eq. 8 rows by sampler and w_r: 'Eq. 8, w_r = 5, pc'."""
    if not name.startswith("Eq. 8"):
        return (0, "", 0.0)
    _, w, sampler = name.split(", ")
    return (1, sampler, float(w.split("=")[1]))


def markdown(folder) -> str:
    """Every task's table, with the run summary line under it."""
    runs = load_runs(folder)
    out = []
    for r in runs.get("sr", []):
        r["rows"] = dict(sorted(r["rows"].items(), key=lambda kv: sr_order(kv[0])))
    if "sr" in runs:
        out += ["### Spatial super-resolution (Eq. 8)", "", table(runs["sr"], SR_COLUMNS, truth_row="real 32x32 clip"),
                "", summary(runs["sr"]), ""]
    if "interpolation" in runs:
        cols = TEMPORAL_COLUMNS + [("PSNR last frame (dB)", "last_frame_psnr", 2)]
        out += ["### Interpolation (every other frame known)", "",
                table(runs["interpolation"], cols, truth_row="real clip"), "", summary(runs["interpolation"]), ""]
    if "prediction" in runs:
        cols = TEMPORAL_COLUMNS + [("carry-over at the junction", "junction", 3)]
        out += ["### Prediction (first 2 frames known)", "", table(runs["prediction"], cols, truth_row="real clip"),
                "", summary(runs["prediction"]), ""]
    if "extend" in runs:
        ext = runs["extend"]
        for r in ext:  # the real / spliced reference as rows of their own
            r["ref"] = {f"{k} Moving MNIST clips" if k == "real" else "real clips spliced at every boundary": v
                        for k, v in r["truth"].items()}
        out += ["### Table 6 on the shipped model: 4x extension", "", table(ext, EXTEND_COLUMNS), "",
                "References (the same boundaries, τ = the real clips' own):", "", table(ext, EXTEND_COLUMNS, "ref"),
                "", summary(ext), ""]
    return "\n".join(out)


# --- strips ------------------------------------------------------------------------------------


def to_uint8(frames) -> np.ndarray:
    """[T, H, W, C] in [-1, 1] -> uint8 [T, H, W] (channels averaged)."""
    f = np.asarray(frames, np.float64).mean(axis=-1)
    return np.round((np.clip(f, -1, 1) + 1) * 127.5).astype(np.uint8)


def nearest_resize(frames, size: int) -> np.ndarray:
    """[T, h, w, C] -> [T, size, size, C] by pixel repetition (to show a low-resolution condition)."""
    k = size // frames.shape[1]
    return np.repeat(np.repeat(frames, k, axis=1), k, axis=2)


def strip(rows, *, scale: int = 2, gap: int = 2, label_width: int = 170, marks=()) -> Image.Image:
    """One image: per row a text label, then the row's frames left to right.

    rows: [(label, frames [T, H, W, C] in [-1, 1]) or (label, None) for a blank separator];
    marks: frame indices before which a red bar is drawn (block boundaries).
    """
    size = next(f.shape[1] for _, f in rows if f is not None) * scale
    t_max = max(f.shape[0] for _, f in rows if f is not None)
    width = label_width + t_max * (size + gap) + 4 * len(marks)
    heights = [size + gap if f is not None else 6 for _, f in rows]
    img = Image.new("RGB", (width, sum(heights) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = gap
    for (label, frames), h in zip(rows, heights):
        if frames is not None:
            draw.text((4, y + size // 2 - 5), label, fill=(0, 0, 0))
            x = label_width
            for t, fr in enumerate(to_uint8(frames)):
                if t in marks:
                    draw.rectangle([x, y, x + 2, y + size - 1], fill=(220, 0, 0))
                    x += 4
                im = Image.fromarray(fr).resize((size, size), Image.Resampling.NEAREST)
                img.paste(im.convert("RGB"), (x, y))
                x += size + gap
        y += h
    return img


def task_strip(npz_paths, *, videos: int = 2, scale: int = 2, marks=(), order=None) -> Image.Image:
    """The strip of one seed's run files: for each of the first `videos` videos, the condition,
    every generated row (in file order, or sorted by the key function `order`), the truth (when
    there is one), then a blank line."""
    arrays = {}
    for path in npz_paths:
        with np.load(path) as z:
            arrays.update({n: z[n] for n in z.files if n not in arrays})
    names = [n for n in arrays if n not in ("condition", "truth")]
    names = names if order is None else sorted(names, key=order)
    size = max(a.shape[2] for a in arrays.values())
    rows = []
    for i in range(min(videos, min(len(a) for a in arrays.values()))):
        if "condition" in arrays:
            c = arrays["condition"][i]
            rows.append((f"condition (video {i})", c if c.shape[1] == size else nearest_resize(c, size)))
        rows += [(n, arrays[n][i]) for n in names]
        if "truth" in arrays:
            rows.append(("truth (real clip)", arrays["truth"][i]))
        rows.append(("", None))
    return strip(rows[:-1], scale=scale, marks=marks)
