"""The training step, compiled: the twin of `vdm_ref.train` (same names, same state layout, same
draws): optax AdamW, EMA, sharded over a `jax.sharding.Mesh`. A model-layer module: the loop, the
run directory and the CLI command (`vdm_fast.training`, the application layer) import it.

The readable optimizer maths of the reference (`adam_update`, `clip_by_global_norm`,
`ema_update`, ...) is re-exported as is (it is right under jit, on the canonical state); the
compiled step itself uses the equivalent optax chain (`make_optimizer`), checked against it in
tests/test_train_step.py. By design, a non-finite loss leaves the state unchanged instead of
applying the update.

The same update as `vdm_ref.train.train_step` (see its module docstring for the equations), with

- the network from `network_apply(backend)` (the Equinox U-Net of `vdm_fast.network`, optionally
  in bfloat16 and rematerialised; `vdm_ref.network.apply` for 'ref');
- the optimizer as an optax chain: clip_by_global_norm → scale_by_adam → add_decayed_weights →
  scale_by_learning_rate(warm-up schedule);
- the whole step under one `jax.jit`, with the state donated and every array placed by the
  shardings of `vdm_fast.sharding` (data parallel: the batch split over devices; FSDP: every
  parameter, EMA and Adam moment also split over the 'fsdp' mesh axis).

`make_step` is what the training loop calls: for --backend fast this compiled step on a mesh,
for --backend ref `vdm_ref.train.train_step` under jax.jit (`reference_step`), both on the same
canonical checkpoint state.

The state is a dict {"step", "params", "ema", "opt"} whose "params" and "ema" are nested dicts
in the shared layout and whose "opt" is the optax state; `opt_to_canonical` /
`opt_from_canonical` convert the latter to and from the backend-free {"mu", "nu", "count"} that
checkpoints and `vdm_ref.train` use.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vdm_ref import train as ref_train
from vdm_ref.network import param_shapes
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
    decay_factor,
    ema_decay_at,
    learning_rate_at,
    recipe_dict,
    step_key,
    step_randomness,
)

from vdm_fast import compile_options, cpu_host
from vdm_fast import sharding as shd
from vdm_fast.backend import BACKENDS, network_apply  # noqa: F401  (the one backend switch)


def make_optimizer(config, recipe: Recipe, params=None, progress=0.0) -> optax.GradientTransformation:
    """AdamW with Appendix A's β1, β2, η, weight decay; warm-up, decay, clipping from the Recipe.
    progress: the run's progress p of the learning-rate decay (a traced scalar inside the step)."""
    tc = config.train

    def schedule(count):
        return learning_rate_at(count, tc.learning_rate, recipe.warmup_steps, recipe.lr_decay, progress)

    mask = None
    if not recipe.decay_biases:
        mask = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)  # noqa: E731
    parts = []
    if recipe.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(recipe.grad_clip))
    parts.append(optax.scale_by_adam(b1=tc.beta1, b2=tc.beta2, eps=recipe.adam_eps))
    if tc.weight_decay > 0:
        parts.append(optax.add_decayed_weights(tc.weight_decay, mask=mask))
    parts.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*parts)


def init_train_state(config, params, recipe: Recipe):
    """{"step", "params", "ema", "opt"}: float32 parameters (shared layout), EMA = θ, optax state."""
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    opt = make_optimizer(config, recipe).init(params)
    return _own_buffers({"step": jnp.zeros((), jnp.int32), "params": params, "ema": params, "opt": opt})


def _own_buffers(state):
    """Every leaf in a buffer of its own (the step donates the state: no buffer may appear twice,
    as optax's two update counts or θ and its EMA copy would)."""
    return jax.tree.map(lambda x: jnp.asarray(np.array(x, copy=True)), state)


def _is_state(x):
    return isinstance(x, (optax.ScaleByAdamState, optax.ScaleByScheduleState))


def opt_to_canonical(opt_state) -> dict:
    """The optax state as {"mu", "nu", "count"} (Adam's moments in the parameter layout)."""
    for s in jax.tree.leaves(opt_state, is_leaf=_is_state):
        if isinstance(s, optax.ScaleByAdamState):
            return {"mu": s.mu, "nu": s.nu, "count": s.count}
    raise ValueError("optimizer state holds no ScaleByAdamState")


def opt_from_canonical(template, canonical: dict):
    """An optax state shaped like `template` holding the canonical {"mu", "nu", "count"}
    (the learning-rate schedule's count, equal to Adam's, is set too)."""
    count = jnp.asarray(canonical["count"], jnp.int32)
    f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)  # noqa: E731

    def put(s):
        if isinstance(s, optax.ScaleByAdamState):
            return optax.ScaleByAdamState(count=count, mu=f32(canonical["mu"]), nu=f32(canonical["nu"]))
        if isinstance(s, optax.ScaleByScheduleState):
            return optax.ScaleByScheduleState(count=count)
        return s

    return jax.tree.map(put, template, is_leaf=_is_state)


def loss_fn(params, config, batch, key, *, backend="fast", train=True, compute_dtype=None, remat=False,
            batch_parts=1):
    """Eq. 2 on one batch (see `vdm_ref.train.loss_fn`), with the `backend`'s network (evaluated
    as `batch_parts` independent parts: `vdm_fast.backend.in_parts`)."""
    apply_fn = network_apply(backend, compute_dtype=compute_dtype, remat=remat, parts=batch_parts)
    return ref_train.loss_fn(params, config, batch, key, apply_fn=apply_fn, train=train)


def _step(state, batch, key, progress, proceed=True, *, config, recipe, backend, compute_dtype=None, remat=False,
          batch_parts=1):
    tc = config.train
    optimizer = make_optimizer(config, recipe, progress=progress)
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], config, batch, key, backend=backend,
                                              compute_dtype=compute_dtype, remat=remat, batch_parts=batch_parts)
    norm = optax.tree.norm(grads)
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    n = state["step"]
    decay = ema_decay_at(n + 1.0, tc.ema_decay, recipe.ema_warmup)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state["ema"], params)
    # A non-finite loss or gradient leaves the state as it was (the loop then stops and saves it),
    # and so does every step after one that was not applied (`proceed` False: see make_train_step).
    ok = jnp.isfinite(loss) & jnp.isfinite(norm) & proceed
    new = {"step": n + 1, "params": params, "ema": ema, "opt": opt}
    new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    metrics = {"loss": loss, "grad_norm": norm,
               "learning_rate": learning_rate_at(n, tc.learning_rate, recipe.warmup_steps, recipe.lr_decay,
                                                 progress),
               "ema_decay": decay, "applied": ok}
    return new, metrics


def make_train_step(config, recipe: Recipe, *, backend="fast", state_sharding=None,
                    batch_sharding=None, compute_dtype=None, remat=False):
    """The jitted step (state, batch, key, progress=0.0, proceed=True) -> (state, metrics), state
    donated; progress p ∈ [0, 1] drives `recipe.lr_decay` (a traced scalar: changing it never
    recompiles). metrics["applied"] says whether the update was applied: not when the loss or the
    gradient norm is non-finite, nor when `proceed` (a bool, on the devices: the previous step's
    metrics["applied"]) is False. So a loop may read a step's metrics one step late, after it has
    queued the next step, and still stop on the last good state.

    With shardings (from `vdm_fast.sharding`), inputs and outputs are placed by them and
    XLA inserts the collectives (gradient all-reduce for data parallelism; parameter all-gather
    and gradient reduce-scatter for FSDP).
    """
    return _with_progress(_jitted_step(config, recipe, backend=backend, state_sharding=state_sharding,
                                       batch_sharding=batch_sharding, compute_dtype=compute_dtype, remat=remat))


def _jitted_step(config, recipe: Recipe, *, backend="fast", state_sharding=None, batch_sharding=None,
                 compute_dtype=None, remat=False, batch_parts=1):
    """`jax.jit` of `_step` (state donated, placed by the shardings when given)."""
    fn = functools.partial(_step, config=config, recipe=recipe, backend=backend,
                           compute_dtype=compute_dtype, remat=remat, batch_parts=batch_parts)
    if state_sharding is None:
        return compile_options.jit(fn, donate_argnums=(0,))
    mesh = jax.tree.leaves(batch_sharding)[0].mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return compile_options.jit(fn, donate_argnums=(0,),
                               in_shardings=(state_sharding, batch_sharding, replicated, replicated, replicated),
                               out_shardings=(state_sharding, replicated))


def _with_progress(jitted):
    """step(state, batch, key, progress=0.0, proceed=True): the progress as a float32 array and
    proceed as a bool array (one compiled program)."""

    def step(state, batch, key, progress=0.0, proceed=True):
        return jitted(state, batch, key, jnp.asarray(progress, jnp.float32), jnp.asarray(proceed, bool))

    return step


def train_step(state, batch, config, recipe: Recipe, key, progress=0.0, *, backend="fast"):
    """One update, compiled (cached per config/recipe/backend). Same result as
    `vdm_ref.train.train_step` on the same state, batch, key and progress (to float32 round-off)."""
    return _cached_step(config, recipe, backend)(state, batch, key, jnp.asarray(progress, jnp.float32))


@functools.lru_cache(maxsize=8)
def _cached_step(config, recipe, backend):
    return compile_options.jit(functools.partial(_step, config=config, recipe=recipe, backend=backend))


def state_to_canonical(state) -> dict:
    """A train state as backend-free NumPy nested dicts (what checkpoints store). Multi-host:
    sharded arrays are gathered from every process first."""
    canon = opt_to_canonical(state["opt"])

    def to_np(tree):
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            tree = multihost_utils.process_allgather(tree, tiled=True)
        return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)

    return {"params": to_np(state["params"]), "ema": to_np(state["ema"]),
            "opt": {"mu": to_np(canon["mu"]), "nu": to_np(canon["nu"]),
                    "count": np.asarray(jax.device_get(canon["count"]))}}


def abstract_train_state(config, recipe: Recipe):
    """The structure, shapes and dtypes of `init_train_state` (jax.ShapeDtypeStruct leaves);
    nothing is allocated."""
    params = jax.tree.map(lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32), param_shapes(config.unet),
                          is_leaf=lambda x: isinstance(x, tuple))
    return jax.eval_shape(lambda p: {"step": jnp.zeros((), jnp.int32), "params": p, "ema": p,
                                     "opt": make_optimizer(config, recipe).init(p)}, params)


def placed_train_state(config, recipe: Recipe, shardings, *, params=None, arrays=None, step: int = 0):
    """The state of `init_train_state(params)`, or the state of a checkpoint's canonical `arrays`
    at `step` (the inverse of `state_to_canonical`), built on its devices (`shardings`, a tree like
    `abstract_train_state`'s): the counters and AdamW's zero moments computed there, each host
    array copied there once as float32, every leaf a buffer of its own. `init_train_state` +
    `jax.device_put` copy the whole state on the way (at 71M parameters `make_step` peaked 2.1 GB
    above where it started, for a 1.1 GB state); this does not."""
    template = abstract_train_state(config, recipe)
    count = 0 if arrays is None else arrays["opt"]["count"]

    def counters_and_zeros(step, count):  # computed there: every output a buffer of its own
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), template["params"])
        return step, opt_from_canonical(template["opt"], {"count": count, "mu": zeros, "nu": zeros})

    step, opt = jax.device_put(jax.jit(counters_and_zeros)(jnp.int32(step), jnp.int32(count)),
                               (shardings["step"], shardings["opt"]))
    if arrays is None:  # a new state: θ and its EMA copy, AdamW's moments 0 (optax's init)
        arrays = {"params": params, "ema": params}
    else:
        where = opt_to_canonical(shardings["opt"])
        mu = _to_devices(arrays["opt"]["mu"], where["mu"])
        nu = _to_devices(arrays["opt"]["nu"], where["nu"])
        opt = jax.tree.map(lambda s: s._replace(mu=mu, nu=nu) if isinstance(s, optax.ScaleByAdamState) else s,
                           opt, is_leaf=_is_state)
    return {"step": step, "params": _to_devices(arrays["params"], shardings["params"]),
            "ema": _to_devices(arrays["ema"], shardings["ema"]), "opt": opt}


def _to_devices(tree, shardings):
    """Host arrays (a tree) as float32 arrays placed by `shardings` (a tree of the same
    structure), one leaf at a time: a host copy of its own, on one device, then placed from there.
    (Placed straight from the host, the shards of a replicated array on a CPU's devices may share
    one host buffer, and the step donates every buffer: no two may be the same.)"""
    return jax.tree.map(lambda x, sh: jax.device_put(jnp.asarray(np.array(x, np.float32, copy=True)), sh),
                        tree, shardings)


# ---------------------------------------------------------------------------------------------
# The step the loop runs: one call picks the implementation


class TrainStep(NamedTuple):
    """A ready-to-run step: `state` (placed), `step(state, batch, key, progress=0.0, proceed=True)
    -> (state, metrics)` (progress: p of the learning-rate decay; a non-finite step, or one after
    an unapplied step, returns the state unchanged: `make_train_step`), `to_canonical(state)` (the
    checkpoint's NumPy dicts), `put_batch(host_batch)` (this process's rows -> the step's input)
    and `compile_s`, the seconds the step took to compile ahead of time (None: at its first call);
    `batch_parts`, the parts each device's batch is evaluated in (`make_step`)."""

    state: object
    step: Callable
    to_canonical: Callable
    put_batch: Callable
    compile_s: float | None = None
    batch_parts: int = 1


def make_step(config, recipe: Recipe, *, backend: str = "fast", params=None, arrays=None, start_step: int = 0,
              mesh=None, compute_dtype=None, remat=False, batch_parts=1, example_batch=None) -> TrainStep:
    """The training step of `backend` on a new state (`params`, shared layout) or a checkpoint's
    canonical `arrays` at `start_step`.

    fast: the compiled step, the state split over `mesh` ('data', 'fsdp'; FSDP rule of
    `vdm_fast.sharding`), each batch over all its devices. With `example_batch` (a host batch of
    the run's shapes) the step is compiled ahead of time, before the state exists, and the
    compiler's freed memory is handed back (`cpu_host.release_freed_memory`) before the state is
    placed (`placed_train_state`): the compiler's working set and the state are never resident
    together.
    batch_parts: each device's batch evaluated as that many independent parts in one program
    (`vdm_fast.backend.in_parts`; `sharding.cpu_batch_parts` picks it on a CPU).
    ref: `reference_step` on one device.
    """
    if backend == "ref":
        return reference_step(config, recipe, params, arrays, start_step)
    template = abstract_train_state(config, recipe)
    state_sh = shd.param_shardings(template, mesh, fsdp=True, axis="fsdp")
    batch_sh = shd.batch_sharding(mesh, axis=shd.TRAIN_AXES)
    batch_size = config.train.batch_size
    try:
        shd.batch_parts(mesh, batch_size, batch_parts)
    except ValueError as e:
        raise ValueError(f"batch_parts={batch_parts}: {e}") from None
    put_batch = lambda b: shd.global_batch(b, batch_sh, batch_size)  # noqa: E731
    if mesh.size == 1 and mesh.devices.flat[0].platform == "cpu" and cpu_host.on_calling_thread():
        # A CPU copies a host batch asynchronously; a step called before the copy has finished
        # runs on a JAX worker thread, not the calling thread `cpu_host.run_on_calling_thread`
        # asks for (and maps its temporary buffer afresh). The copy is small: wait for it.
        put_batch = lambda b: jax.block_until_ready(shd.global_batch(b, batch_sh, batch_size))  # noqa: E731
        cpu_host.keep_large_blocks()  # the calling thread's heap keeps the step's buffers
    leaves, treedef = jax.tree.flatten(state_sh)
    step = _sharded_step(config, recipe, backend, compute_dtype, remat, batch_parts, treedef, tuple(leaves),
                         batch_sh, _trace_switches())
    compile_s = None
    if example_batch is not None:
        t0 = time.perf_counter()
        abstract = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), template,
                                state_sh)
        step = step.lower(abstract, put_batch(example_batch), step_key(0, 0), jnp.float32(0),
                          jnp.bool_(True)).compile()  # JAX caches it: a second run of the process reuses it
        compile_s = time.perf_counter() - t0
        cpu_host.release_freed_memory()
    state = placed_train_state(config, recipe, state_sh, params=params, arrays=arrays, step=start_step)
    cpu_host.release_freed_memory()
    return TrainStep(state, _with_progress(step), state_to_canonical, put_batch, compile_s, batch_parts)


def _trace_switches() -> tuple:
    """What else decides the compiled program: the XLA options (`compile_options`, read when the
    step is jitted) and the network's CPU materialisation switch (read when it is traced)."""
    from vdm_fast.network import layers

    options = compile_options.compiler_options()
    return (None if options is None else tuple(sorted(options.items())), layers.MATERIALISE_ON_CPU)


@functools.lru_cache(maxsize=4)
def _sharded_step(config, recipe, backend, compute_dtype, remat, batch_parts, treedef, leaves, batch_sh,
                  switches=()):
    """The jitted step of `make_train_step` (before `_with_progress`), cached per configuration,
    placement and `_trace_switches()`: a second run in the same process (a resume, a test)
    reuses the compiled program, and a run with other switches gets its own."""
    return _jitted_step(config, recipe, backend=backend, state_sharding=jax.tree.unflatten(treedef, leaves),
                        batch_sharding=batch_sh, compute_dtype=compute_dtype, remat=remat,
                        batch_parts=batch_parts)


def reference_step(config, recipe: Recipe, params=None, arrays=None, start_step: int = 0) -> TrainStep:
    """--backend ref: `vdm_ref.train.train_step` (jax.grad over the reference, the reference
    AdamW) under jax.jit, on the canonical state {"step", "params", "ema", "opt": {"mu", "nu",
    "count"}} that checkpoints hold. A non-finite step returns the previous state."""
    f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(np.asarray(x), jnp.float32), t)  # noqa: E731
    if arrays is None:
        state = ref_train.init_train_state(config, f32(params))
        state["opt"]["count"] = jnp.zeros((), jnp.int32)
    else:
        state = {"params": f32(arrays["params"]), "ema": f32(arrays["ema"]),
                 "opt": {"mu": f32(arrays["opt"]["mu"]), "nu": f32(arrays["opt"]["nu"]),
                         "count": jnp.asarray(arrays["opt"]["count"], jnp.int32)}}
    state["step"] = jnp.asarray(start_step, jnp.int32)
    jitted = jax.jit(lambda s, b, k, p: ref_train.train_step(s, b, config, recipe, k, p))

    def step(s, b, k, progress=0.0, proceed=True):
        new, metrics = jitted(s, b, k, jnp.asarray(progress, jnp.float32))
        ok = bool(proceed) and bool(jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"]))
        return (new if ok else s), dict(metrics, applied=jnp.asarray(ok))

    def to_canonical(s):
        to_np = lambda t: jax.tree.map(lambda x: np.asarray(jax.device_get(x)), t)  # noqa: E731
        return {"params": to_np(s["params"]), "ema": to_np(s["ema"]),
                "opt": {"mu": to_np(s["opt"]["mu"]), "nu": to_np(s["opt"]["nu"]),
                        "count": np.asarray(jax.device_get(s["opt"]["count"]), np.int32)}}

    return TrainStep(state, step, to_canonical, lambda b: jax.tree.map(jnp.asarray, b))
