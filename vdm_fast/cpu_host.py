"""The host side of training on a CPU: which thread runs a computation, and the heap it allocates from.

XLA's CPU runtime allocates a program's temporary buffer at every execution (182 MB per device
for the `mnist-small` step) and frees it at the end. glibc serves an allocation that large with a
fresh `mmap`, so each step faults its whole temporary buffer in again, page by page: ~89,000
minor faults and ~150 ms of kernel time per `mnist-small` step on the 2-core VM, a fifth of the
process's CPU time (docs/benchmarks.md, "One device, the batch in two parts").

glibc can keep such a buffer for the next step only in its main arena, the heap of the process's
first thread: the arenas of other threads hold at most 64 MB each and `mmap` anything larger
whatever the settings. JAX runs a computation on a device's worker thread, unless the CPU client
dispatches synchronously, when it runs on the calling thread; with one device that is the
training loop's thread, whose heap is the main arena.

- `run_on_calling_thread()`: before JAX starts, synchronous CPU dispatch (`on_calling_thread()`
  says whether it is on).
- `keep_large_blocks()`: large allocations kept in the heap (`mallopt`: no `mmap` for them, no
  trimming below 2 GB). `vdm_fast.train.make_step` calls it for a step on one CPU device run on
  the calling thread (not on a GPU host, whose CPU client is idle): the step then reuses the last
  step's temporary buffer, no faults (`tests/test_cpu_devices.py`).
- `prepare(devices)`: what a training process does before JAX starts: split the CPU into
  `devices` >= 2 devices (`sharding.split_cpu`), or run one device on the calling thread.
- `release_freed_memory()`: hand freed heap memory back to the system (after a compile).

The heap functions are no-ops where glibc is absent. Multi-device CPU runs (`--cpu-devices N`)
keep JAX's worker threads and the faults.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = ["KEEP_BYTES", "M_MMAP_MAX", "M_TRIM_THRESHOLD", "keep_large_blocks", "on_calling_thread", "prepare",
           "release_freed_memory", "run_on_calling_thread"]

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
"""glibc's `mallopt` parameters (malloc.h)."""

KEEP_BYTES = 2**31 - 1
"""Freed memory at the top of the heap kept for reuse, at most (mallopt takes a C int)."""


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc: both exist)
    except (OSError, AttributeError):
        return None
    return libc


def run_on_calling_thread() -> None:
    """Make every CPU computation run on the thread that calls it once its inputs are ready
    (synchronous CPU dispatch; module docstring). Must run before JAX starts (ValueError
    otherwise)."""
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ValueError("JAX has already started: set synchronous CPU dispatch before any JAX operation")
    jax.config.update("jax_cpu_enable_async_dispatch", False)


def on_calling_thread() -> bool:
    """Whether CPU computations run on the calling thread (`run_on_calling_thread`)."""
    import jax

    return not jax.config.values["jax_cpu_enable_async_dispatch"]


def keep_large_blocks() -> bool:
    """From now on, serve large allocations from the heap and keep freed memory there (up to
    `KEEP_BYTES` at its top) instead of mapping and unmapping it (module docstring). Returns
    whether glibc took the settings (False elsewhere)."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))


def prepare(devices: int | None = None) -> None:
    """The CPU layout of a training process, set before JAX starts: `devices` >= 2 splits the
    host's CPU into that many devices (`vdm_fast.sharding.split_cpu`: ValueError once JAX has
    started); None or 1 keeps one device and runs it on the calling thread
    (`run_on_calling_thread`), unless XLA_FLAGS sets a device count or JAX has already started
    (in a notebook, say), where JAX's defaults stay."""
    from jax._src import xla_bridge

    from vdm_fast.sharding import split_cpu

    if devices is not None and devices != 1:
        split_cpu(devices)
    elif not ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
              or xla_bridge.backends_are_initialized()):
        run_on_calling_thread()


def release_freed_memory() -> None:
    """Hand the heap memory the process has freed back to the system (glibc's `malloc_trim`; a
    no-op elsewhere). XLA's compiler frees gigabytes that glibc would otherwise keep mapped, and
    the step's threads allocate from arenas of their own, which do not reuse them."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
