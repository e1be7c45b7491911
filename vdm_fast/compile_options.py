"""XLA compiler options of the compiled training step, sampling loop and network evaluations.

On the CPU, XLA (jax 0.10) hands dots, reductions, element-wise fusions and convolutions to the
YNNPACK library by default. For this project's 1x3x3 convolutions that is the slow choice: the
weight gradient runs as a YNNPACK convolution fed by layout transposes, and the forward and
input-gradient convolutions are slower than XLA's own (Eigen) kernels. Keeping only dots and
reductions in YNNPACK (`xla_cpu_experimental_ynn_fusion_type`) was measured on the 2-core CPU
(docs/benchmarks.md, "XLA CPU options"): the `mnist-small` training step 0.49 s instead of
0.65 s, a batch-32 network evaluation 0.36 s instead of 0.45 s, a 16x16, 64-channel 3x3
convolution's forward + backward 23 ms instead of 67 ms.

The options are passed per compiled function (`jax.jit(..., compiler_options=...)`), never
through the XLA_FLAGS environment variable, so:

- they apply only where the backend is the CPU (a GPU/TPU compile gets XLA's defaults);
- a jax whose XLA lacks the option (checked once by compiling a one-line function) compiles
  with its defaults instead of failing;
- a user's own XLA_FLAGS naming `ynn_fusion_type` win, and `VDM_XLA_CPU_OPTIONS=default` turns
  ours off (what the benchmarks use to measure the difference in one command).
- JAX refuses options on a jit nested in another trace, so the sampling loop and the engine's
  network call, when called inside a caller's own `jax.jit` (`traced`), compile without them.
"""

from __future__ import annotations

import functools
import os

import equinox as eqx
import jax

__all__ = ["CPU_OPTIONS", "ENV_VAR", "compiler_options", "filter_jit", "jit", "traced"]

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
               "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
"""What CPU compiles get: YNNPACK for dots and reductions only (convolutions and element-wise
fusions by XLA's own emitters)."""

ENV_VAR = "VDM_XLA_CPU_OPTIONS"
"""Set to 'default' to compile with XLA's defaults ('ours', or unset, uses CPU_OPTIONS)."""


@functools.cache
def _supported() -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # noqa: BLE001 (an XLA without the option: any compile error means "no")
        return False
    return True


def compiler_options() -> dict | None:
    """CPU_OPTIONS where they apply (module docstring), else None (XLA's defaults)."""
    choice = os.environ.get(ENV_VAR, "ours")
    if choice not in ("ours", "default"):
        raise ValueError(f"{ENV_VAR}={choice!r}: expected 'ours' or 'default'")
    if choice == "default" or "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.default_backend() != "cpu" or not _supported():
        return None
    return dict(CPU_OPTIONS)


def jit(fun, **kwargs):
    """`jax.jit(fun, **kwargs)` with `compiler_options()` (decided when this is called)."""
    options = compiler_options()
    return jax.jit(fun, **kwargs) if options is None else jax.jit(
        fun, compiler_options=options, **kwargs)


def traced(*trees) -> bool:
    """True when any array leaf of `trees` is a tracer: the call is inside another transformation
    (e.g. the caller's own `jax.jit`), where JAX refuses `compiler_options` on a nested jit, so
    the callers here then use their plain compiled function."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def filter_jit(fun):
    """`eqx.filter_jit(fun)` with `compiler_options()` (decided at the first call outside a trace),
    or without them when called inside another trace (`traced`)."""
    plain = eqx.filter_jit(fun)

    @functools.cache
    def optioned():
        return eqx.filter_jit(fun, compiler_options=compiler_options())

    def call(*args, **kwargs):
        return (plain if traced(args, kwargs) else optioned())(*args, **kwargs)

    return call
