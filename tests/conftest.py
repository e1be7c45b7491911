"""Test configuration: several emulated CPU devices, float64 available, strict rank promotion."""

import os

# Several CPU devices for the sharding tests; must be set before JAX initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# The reference runs in float64 under jax.numpy too (jit/grad checks against NumPy float64).
jax.config.update("jax_enable_x64", True)
# Broadcasting must be explicit in library code (STYLE.md): implicit rank promotion is an error.
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("vdm", deadline=None, max_examples=20, derandomize=True)
settings.load_profile("vdm")


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail the test if a generation command starts sampling (bad input must be refused before)."""
    from vdm_fast.generation import engine

    def fail(*args, **kwargs):
        raise AssertionError("sampling started despite bad input")

    monkeypatch.setattr(engine, "sample_window", fail)
