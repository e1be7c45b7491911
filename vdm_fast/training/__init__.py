"""Training of video diffusion models: the compiled sharded step, the loop, the CLI command.

- `step`: optax AdamW + EMA train step under one `jax.jit`, sharded by `sharding`.
- `loop`: checks, run directory, data, logs, samples, checkpoints (`train(TrainOptions)`).
- `command`: the `Train` dataclass behind `python cli.py train`.
See docs/training.md.
"""

from .command import Train
from .loop import DataOptions, NonFiniteLossError, TrainError, TrainOptions, resolve_config, train

__all__ = ["DataOptions", "NonFiniteLossError", "Train", "TrainError", "TrainOptions", "resolve_config", "train"]
