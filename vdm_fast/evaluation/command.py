"""`python cli.py evaluate` (and `python -m vdm_fast.evaluation`): the settings of
`EvalSettings` plus the checkpoint and the outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vdm_fast.generation import open_model
from vdm_fast.inputs import (DEFAULT_CHECKPOINT, InputError, check_writable, first_free, resolve_checkpoint,
                             usage_errors)

from .report import format_table, write_results
from .run import Embed, evaluate
from .settings import EvalSettings


@dataclasses.dataclass
class Evaluate(EvalSettings):
    """Evaluate a checkpoint with FVD and Inception Score on the real I3D (Sec. 4): unconditional
    generation, video prediction (BAIR 1 -> 15, Kinetics-600 5 -> 11, adapted to the model's
    frames), autoregressive extension; against clips of the model's Moving MNIST data.

    Writes the results as JSON (--out) and prints a table. See docs/evaluation.md.
    Example: python cli.py evaluate --num-samples 32 --protocols unconditional bair
    """

    checkpoint: str = DEFAULT_CHECKPOINT
    """Checkpoint directory, or a training run directory (its newest checkpoint)."""
    out: str = ""
    """JSON output path (default: evaluations/<checkpoint name>.json, or <name>-2.json, ... where an
    earlier evaluation is: a default never replaces a file)."""
    save_videos: str = ""
    """A folder for PNG frame grids of the first 4 videos of each row (and of the real clips)."""
    backend: Literal["fast", "ref"] = "fast"
    """Network backend for sampling."""
    ema: bool = True
    """Use the EMA parameters when the checkpoint has them."""
    progress: bool = True
    """Show the progress bar."""

    def run(self, *, embed: Embed | None = None) -> dict:
        """Check the outputs, load the model, evaluate (`run.evaluate`), write and print the results.
        Every user error is a one-line `UsageError` before any sampling."""
        with usage_errors():
            out = Path(self.out) if self.out else self.default_out()
            check_writable(out, "--out")
            if self.save_videos:
                if Path(self.save_videos).is_file():
                    raise InputError(f"--save-videos {self.save_videos}: is a file; expected a folder")
                check_writable(Path(self.save_videos) / "real.png", "--save-videos")
            model = open_model(self.checkpoint, backend=self.backend, ema=self.ema)
        with usage_errors(ValueError):
            results = evaluate(model, self.settings(), embed=embed, progress=self.progress,
                               save_videos=self.save_videos or None)
        with usage_errors(OSError, prefix=f"--out {out}: cannot write: "):
            write_results(out, results)
        print(results["model"])
        print(format_table(results))
        print(f"wrote {out} ({results['seconds']:.0f} s)")
        return results

    def default_out(self) -> Path:
        """evaluations/<checkpoint name>.json, or <name>-2.json, ... where an earlier one is."""
        json_of = lambda s: s.parent / f"{s.name}.json"  # noqa: E731
        return json_of(first_free(Path("evaluations") / resolve_checkpoint(self.checkpoint).name,
                                  lambda s: [json_of(s)]))


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m vdm_fast.evaluation ...` (the same as `python cli.py evaluate ...`)."""
    import tyro

    tyro.cli(Evaluate, args=argv).run()
