"""The training step, readable: Eq. 2 through the reference network, differentiated by `jax.grad`,
and Adam / AdamW with warm-up, gradient clipping and an EMA of the parameters (Appendix A).

One step, for a batch x [B, F, H, W, C] (F = T video frames + N independent image frames,
Sec. 4.3.1) with the frame-kind mask and an optional condition c:

    t ~ U[0, 1], ε ~ N(0, I), keep ~ Bernoulli(1 − p_uncond)     (`step_randomness`)
    c ← keep · c                  (conditioning dropout: c = 0 is the null condition of Eq. 6)
    L(θ) = mean_b ||f_θ(z_t, c, λ_t) − y||²,  z_t = α_t x + σ_t ε,  y = ε or v   (Eq. 2)
    g = ∇_θ L,  g ← g · min(1, c_max / ||g||)                      (global-norm clipping)
    θ ← AdamW(θ, g; η_n, β1, β2, ε, wd)                            (`adam_update`)
    η_n = η · min(1, (n + 1) / warm-up) · D(p)     (`learning_rate_at`; D = 1 or ½(1 + cos πp))
    θ_ema ← d_n θ_ema + (1 − d_n) θ                                (`ema_update`)

The parameters, the Adam moments and the EMA are plain nested dicts in the layout shared by
both backends (`vdm_ref.network.init`), so a reference step and a `vdm_fast.train` step are
compared leaf by leaf, and checkpoints (`vdm_ref.support.checkpoint`) hold them as they are.

Randomness comes in as a JAX key, expanded by `step_randomness` into the draws both backends
consume: the step key is `fold_in(key(seed), step)`, so a run resumed at step n draws exactly
what the uninterrupted run drew.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .configs import LR_DECAYS, check_recipe
from .losses import diffusion_loss, loss_weight_fn

STATE_KEYS = ("step", "params", "ema", "opt")


@dataclass(frozen=True)
class Recipe:
    """Optimisation hyperparameters beyond Appendix A's table (which gives β1, β2, η, wd, EMA).

    - `warmup_steps`: η_n = η · min(1, (n + 1) / warmup_steps) for update n = 0, 1, ... (0: none).
    - `grad_clip`: clip the gradient to this global L2 norm (0: no clipping).
    - `adam_eps`: ε of Adam's denominator √v̂ + ε.
    - `ema_warmup`: use d_n = min(d, (1 + n) / (10 + n)) instead of d for the n-th update, so a
      short run's EMA is not dominated by its random initialisation.
    - `decay_biases`: apply weight decay to every parameter (else only to weights of rank ≥ 2).
    - `lr_decay`: 'none' (η after the warm-up) or 'cosine' (η · ½(1 + cos πp) at the run's
      progress p ∈ [0, 1], which the caller passes to the step: the fraction of its steps or of
      its time budget done, so a `--minutes` run decays to 0 when its time is up).
    """

    warmup_steps: int = 200
    grad_clip: float = 1.0
    adam_eps: float = 1e-8
    ema_warmup: bool = True
    decay_biases: bool = False
    lr_decay: str = "none"

    @classmethod
    def of(cls, train) -> "Recipe":
        """The recipe a `TrainConfig` carries (its warmup_steps, grad_clip, adam_eps, ema_warmup,
        lr_decay)."""
        return cls(warmup_steps=train.warmup_steps, grad_clip=train.grad_clip,
                   adam_eps=train.adam_eps, ema_warmup=train.ema_warmup, lr_decay=train.lr_decay)

    def __post_init__(self):
        check_recipe(self.warmup_steps, self.grad_clip, self.adam_eps)
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay={self.lr_decay!r}: expected one of {LR_DECAYS}")


# ---------------------------------------------------------------------------------------------
# Schedules


def learning_rate_at(n, learning_rate, warmup_steps, decay="none", progress=0.0):
    """η_n = η · min(1, (n + 1) / warmup_steps) · D(p): linear warm-up over the first updates,
    then η, times the decay D(p) = 1 ('none') or ½(1 + cos πp) ('cosine', `decay_factor`).

    n: the 0-based update count (int or array). warmup_steps = 0 gives η throughout (times D).
    progress: p ∈ [0, 1], the fraction of the run done (float or array; unused for 'none').
    """
    rate = learning_rate * decay_factor(progress, decay) if decay != "none" else learning_rate
    if warmup_steps <= 0:
        return rate + 0.0 * n
    frac = (n + 1.0) / float(warmup_steps)
    return rate * (frac - (frac > 1.0) * (frac - 1.0))


def decay_factor(progress, decay="cosine"):
    """D(p) = ½(1 + cos πp) for 'cosine' (p clipped to [0, 1]: 1 at the start, 0 at the end), 1 for
    'none'."""
    if decay == "none":
        return 1.0
    if decay != "cosine":
        raise ValueError(f"lr_decay={decay!r}: expected one of {LR_DECAYS}")
    if isinstance(progress, (int, float)):
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, float(progress)))))
    xp = _xp(progress)
    p = xp.clip(progress, 0.0, 1.0)
    return 0.5 * (1.0 + xp.cos(math.pi * p))


def ema_decay_at(n, decay, warmup=True):
    """d_n = min(d, (1 + n) / (10 + n)) for the n-th (1-based) update with EMA warm-up, else d."""
    if not warmup:
        return decay + 0.0 * n
    ramp = (1.0 + n) / (10.0 + n)
    return ramp - (ramp > decay) * (ramp - decay)


# ---------------------------------------------------------------------------------------------
# Tree helpers (nested dicts of arrays)


def _tree_map(fn, *trees):
    """Apply fn leaf by leaf over nested dicts with the same keys."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: _tree_map(fn, *(t[k] for t in trees)) for k in first}
    return fn(*trees)


def _tree_leaves(tree):
    """The leaves of a nested dict, in sorted-key order."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _tree_leaves(tree[k])]
    return [tree]


def global_norm(tree):
    """||g|| = sqrt(Σ over every leaf of Σ g²)."""
    leaves = _tree_leaves(tree)
    total = sum(_xp(leaf).sum(leaf * leaf) for leaf in leaves)
    return _xp(leaves[0]).sqrt(total)


def _xp(x):
    from ._array import namespace

    return namespace(x)


def decay_mask(params, decay_biases=False):
    """1.0 where weight decay applies (weights of rank ≥ 2, or everything), else 0.0; floats."""
    return _tree_map(lambda p: 1.0 if (decay_biases or p.ndim >= 2) else 0.0, params)


# ---------------------------------------------------------------------------------------------
# Optimiser and EMA


def clip_by_global_norm(grads, max_norm):
    """g ← g · min(1, c / ||g||) (max_norm c = 0: unchanged). Returns (clipped g, ||g||)."""
    norm = global_norm(grads)
    if max_norm <= 0:
        return grads, norm
    xp = _xp(norm)
    scale = xp.minimum(xp.ones_like(norm), max_norm / xp.maximum(norm, xp.full_like(norm, 1e-30)))
    # optax.clip_by_global_norm: g unchanged when ||g|| < c, else g · c / ||g||.
    return _tree_map(lambda g: g * scale, grads), norm


def init_opt_state(params):
    """Adam's state: first and second moments m = v = 0 in the parameter layout, count n = 0."""
    zeros = _tree_map(lambda p: 0.0 * p, params)
    return {"mu": zeros, "nu": _tree_map(lambda p: 0.0 * p, params), "count": 0}


def adam_update(params, grads, opt, *, learning_rate, beta1, beta2, eps, weight_decay, mask):
    """One AdamW update (Kingma & Ba 2015; decoupled weight decay, Loshchilov & Hutter 2019):

        m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²,   n ← n + 1
        m̂ = m / (1 − β1ⁿ),   v̂ = v / (1 − β2ⁿ)
        θ ← θ − η ( m̂ / (√v̂ + ε) + wd · mask · θ )

    learning_rate: η for this update (`learning_rate_at`); mask: `decay_mask`. Returns
    (θ, opt state).
    """
    n = opt["count"] + 1
    mu = _tree_map(lambda m, g: beta1 * m + (1.0 - beta1) * g, opt["mu"], grads)
    nu = _tree_map(lambda v, g: beta2 * v + (1.0 - beta2) * g * g, opt["nu"], grads)
    c1, c2 = 1.0 - beta1**n, 1.0 - beta2**n

    def update(p, m, v, k):
        xp = _xp(p)
        return p - learning_rate * ((m / c1) / (xp.sqrt(v / c2) + eps) + weight_decay * k * p)

    return _tree_map(update, params, mu, nu, mask), {"mu": mu, "nu": nu, "count": n}


def ema_update(ema, params, decay):
    """θ_ema ← d θ_ema + (1 − d) θ."""
    return _tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


# ---------------------------------------------------------------------------------------------
# Randomness and the loss


def step_key(seed, step):
    """The key of training step `step`: fold_in(key(seed), step) (no state to carry or restore)."""
    import jax

    return jax.random.fold_in(jax.random.key(int(seed)), step)


def step_randomness(key, x_shape, cond_dropout):
    """The draws of one training step, shared by both backends:

    t ~ U[0, 1) [B]; ε ~ N(0, I) of x's shape (float32); keep [B] float32, 1 with probability
    1 − cond_dropout (0: replace c by the null condition); the dropout key of the network.
    """
    import jax
    import jax.numpy as jnp

    k_t, k_eps, k_keep, k_drop = jax.random.split(key, 4)
    b = x_shape[0]
    t = jax.random.uniform(k_t, (b,), jnp.float32)
    eps = jax.random.normal(k_eps, tuple(x_shape), jnp.float32)
    keep = jax.random.bernoulli(k_keep, np.float32(1.0 - cond_dropout), (b,)).astype(jnp.float32)
    return t, eps, keep, k_drop


def drop_condition(cond, keep):
    """c ← keep · c per example (keep [B] of 0/1): the null condition c = 0 where keep = 0.

    cond: None, a one-hot [B, K], or (tokens [B, L, D], token_mask [B, L]) (the tokens are
    zeroed; the attention pooling of all-zero tokens is exactly 0).
    """
    if cond is None:
        return None
    if isinstance(cond, (tuple, list)):
        tokens, token_mask = cond
        return (tokens * keep[:, None, None], token_mask)
    return cond * keep[:, None]


def batch_condition(batch):
    """The condition of a batch dict: None, batch['label'] (one-hot) or (tokens, token_mask)."""
    if batch.get("tokens") is not None:
        return (batch["tokens"], batch["token_mask"])
    return batch.get("label")


def loss_fn(params, config, batch, key, *, apply_fn=None, train=True):
    """Eq. 2 on one batch: mean over examples of w'(λ_t) ||f_θ(z_t, c, λ_t) − y||², y = ε or v,
    w' = 1 or the Min-SNR factor (`config.train.loss_weight`, `vdm_ref.losses.loss_weight_fn`).

    params: the shared layout; config: a `Config`; batch: {"x": [B, F, H, W, C],
    "frame_mask": bool [B, F] or None, "label" | ("tokens", "token_mask")}; key: the step key.
    apply_fn: the network (default `vdm_ref.network.apply`); train: dropout and conditioning
    dropout on. Returns the scalar loss.
    """
    from .network import apply as reference_apply

    apply_fn = reference_apply if apply_fn is None else apply_fn
    u = config.unet
    x = batch["x"]
    t, eps, keep, k_drop = step_randomness(key, x.shape, config.train.cond_dropout if train else 0.0)
    cond = drop_condition(batch_condition(batch), keep)
    frame_mask = batch.get("frame_mask")

    def predict(z, logsnr):
        return apply_fn(params, u, z, logsnr, cond, frame_mask, dropout_rng=k_drop if train else None)

    d, tc = config.diffusion, config.train
    losses = diffusion_loss(predict, x, t, eps, target=u.target, logsnr_min=d.logsnr_min,
                            logsnr_max=d.logsnr_max, logsnr_shift=d.logsnr_shift,
                            weight_fn=loss_weight_fn(tc.loss_weight, tc.min_snr_gamma, u.target))
    return _xp(losses).mean(losses)


# ---------------------------------------------------------------------------------------------
# State and step


def init_train_state(config, params):
    """{"step": 0, "params": θ, "ema": θ, "opt": Adam's zero state} (θ in the shared layout)."""
    return {"step": 0, "params": params, "ema": _tree_map(lambda p: p, params),
            "opt": init_opt_state(params)}


def train_step(state, batch, config, recipe, key, progress=0.0):
    """One update (module docstring) with jax.grad over the reference loss; `progress` is the
    run's progress p of the learning-rate decay (`learning_rate_at`). Returns
    (new state, metrics {"loss", "grad_norm", "learning_rate", "ema_decay"}).

    Everything is the reference code on jax.numpy: slow, for tiny presets and for checking
    `vdm_fast.train.train_step` (same state layout, same draws, same result).
    """
    import jax

    tc = config.train
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], config, batch, key)
    grads, norm = clip_by_global_norm(grads, recipe.grad_clip)
    n = state["opt"]["count"]
    lr = learning_rate_at(n, tc.learning_rate, recipe.warmup_steps, recipe.lr_decay, progress)
    params, opt = adam_update(state["params"], grads, state["opt"], learning_rate=lr,
                              beta1=tc.beta1, beta2=tc.beta2, eps=recipe.adam_eps,
                              weight_decay=tc.weight_decay,
                              mask=decay_mask(state["params"], recipe.decay_biases))
    decay = ema_decay_at(n + 1, tc.ema_decay, recipe.ema_warmup)
    ema = ema_update(state["ema"], params, decay)
    new = {"step": state["step"] + 1, "params": params, "ema": ema, "opt": opt}
    return new, {"loss": loss, "grad_norm": norm, "learning_rate": lr, "ema_decay": decay}


def recipe_dict(recipe: Recipe) -> dict:
    """A Recipe as a JSON-able dict (checkpoint metadata)."""
    return dataclasses.asdict(recipe)
