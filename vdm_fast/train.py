"""The training step, compiled: the twin of `vdm_ref.train` (same names, same state layout,
same draws). The loop and the CLI command live in `vdm_fast.training`, the mesh and placement in
`vdm_fast.sharding`.

The readable optimizer maths of the reference (`adam_update`, `clip_by_global_norm`,
`ema_update`, ...) is re-exported as is (it is right under jit, on the canonical state); the
compiled step itself uses the equivalent optax chain (`make_optimizer`), checked against it in
tests/test_train_step.py.

Differences from the reference, by design: the optimizer is an optax chain (its state converts
to the reference's {"mu", "nu", "count"} by `opt_to_canonical`), the step is one `jax.jit`,
and a non-finite loss leaves the state unchanged instead of applying the update.
"""

from vdm_ref.train import (  # noqa: F401  (small tree/scalar maths reused as is: right under jit)
    Recipe,
    adam_update,
    clip_by_global_norm,
    decay_mask,
    ema_update,
    global_norm,
    init_opt_state,
    batch_condition,
    drop_condition,
    ema_decay_at,
    learning_rate_at,
    recipe_dict,
    step_key,
    step_randomness,
)

from .training.step import (  # noqa: F401
    init_train_state,
    loss_fn,
    make_optimizer,
    make_train_step,
    network_apply,
    opt_from_canonical,
    opt_to_canonical,
    state_from_canonical,
    state_to_canonical,
    train_step,
)
