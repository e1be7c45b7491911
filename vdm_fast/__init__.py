"""vdm_fast: the public API of vdm_ref in JAX + Equinox (jit, fused attention, compiled loops)."""
