"""Conditional generation of Sec. 3.1 on a trained model, measured against ground truth (issue 17).

On Moving MNIST every conditional task has an answer: a real clip, downsampled or with frames
removed, is the condition, and the clip itself is the truth. Three tasks on one unconditional
checkpoint (default `checkpoints/mnist-small`, 8 frames of 32x32), and the cascade:

- `sr`: spatial 2x super-resolution by reconstruction guidance (Eq. 8) from the area-downsampled
  clip, against bilinear / bicubic / pixel-repeat upsampling and the unguided model, over w_r and
  ancestral vs predictor-corrector sampling.
- `temporal`: interpolation (every other frame known) and prediction (the first frames known),
  replacement vs reconstruction guidance (Eq. 7), against frame-blending / last-frame baselines.
- `extend`: Table 6 on the shipped model: 4x block-autoregressive extension of the model's own
  samples, reconstruction guidance vs replacement, boundary vs within-block coherence.
- `cascade`: the Fig. 2 cascade against sampling the 32x32 model directly. A base model
  (`--base`, default `checkpoints/mnist-base-16`: 8 frames of 16x16 at frameskip 2) samples, the
  32x32 model upsamples it x2 in space and x2 in time by Eq. 7 + 8 (15 frames); against the 32x32
  model extending its own samples to 15 frames and real clips: sample quality (shift coherence,
  carry-over, recognisable, same digit), the cascade's consistency with its base video (PSNR of
  D(final)[:, ::2] against it) and seconds per video per stage. With captions (unless
  `--no-captions`): the base conditioned on real clips' captions vs the caption-conditioned 32x32
  model (`--text-checkpoint`, default `checkpoints/mnist-small-text`) sampling directly, caption
  fidelity with the real clips' own (ceiling) and shuffled (floor) captions. The report adds a
  strip (base held | cascade | direct) and a GIF of the same.

    python -m scripts.conditional_truth run sr prediction interpolation extend --seed 0 --videos 16 --steps 32
    python -m scripts.conditional_truth run cascade --seed 0 --videos 16 --steps 32
    python -m scripts.conditional_truth report            # Markdown tables + PNG strips (+ cascade.gif)

(docs/results.md, "Conditional generation against ground truth", lists the runs behind its tables.)

Modules: `measures` (PSNR, classical upsamplers, digit agreement), `tasks` (the ground-truth
runs), `cascade` (the cascade task), `report` (tables over seeds, image strips, the cascade GIF),
`__main__` (the command line).
"""
