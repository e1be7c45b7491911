"""loss.png's trend line: it must follow the logged loss, also right after a steep start."""

import json

import numpy as np

from vdm_fast.training.rundir import append_metrics, plot_losses, read_metrics, smooth_loss


def _decaying(n=600):
    steps = np.arange(1, n + 1) * 25
    rng = np.random.default_rng(0)
    loss = (0.006 + 0.7 * np.exp(-steps / 60.0)) * np.exp(0.05 * rng.standard_normal(n))
    return steps, loss


def test_trend_stays_within_the_nearby_logged_losses():
    steps, loss = _decaying()
    at, smooth, k = smooth_loss(steps, loss)
    assert k % 2 == 1 and len(at) == len(smooth) == len(loss) - k + 1
    for s, v in zip(at, smooth):
        i = int(np.searchsorted(steps, s))
        window = loss[i - k // 2: i + k // 2 + 1]
        assert len(window) == k
        assert window.min() <= v <= window.max(), (s, v, window.min(), window.max())
    # a trailing mean would sit far above the curve one window after the steep start
    first = int(np.searchsorted(steps, at[0]))
    assert smooth[0] < 2 * np.median(loss[first: first + k])


def test_short_runs_draw_no_trend_but_a_plot(tmp_path):
    steps, loss = _decaying(5)
    assert smooth_loss(steps, loss) is None
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": int(s), "loss": float(v)}) + "\n" for s, v in zip(steps, loss)))
    plot_losses(metrics, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_a_line_cut_short_by_a_kill_is_skipped_and_the_next_row_starts_a_new_line(tmp_path):
    """A run killed mid-write leaves half a line; resuming appends after it and still plots."""
    metrics = tmp_path / "metrics.jsonl"
    for step in range(1, 40):
        append_metrics(metrics, {"step": step, "loss": 1.0 / step})
    metrics.write_text(metrics.read_text() + '{"step": 40, "lo')  # the kill
    append_metrics(metrics, {"step": 41, "loss": 0.02})
    rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == list(range(1, 40)) + [41]
    plot_losses(metrics, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 0
