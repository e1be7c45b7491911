"""vdm_ref: the paper "Video Diffusion Models" (Ho et al. 2022) as readable, pure array-API code.

Each equation is one small function whose docstring is the equation. NumPy by default,
`jax.numpy` when gradients are needed. See docs/equations.md for the equation -> function map.
"""
