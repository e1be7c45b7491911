"""Conditional generation of Sec. 3.1 on a trained model, measured against ground truth (issue 17).

On Moving MNIST every conditional task has an answer: a real clip, downsampled or with frames
removed, is the condition, and the clip itself is the truth. Three tasks on one unconditional
checkpoint (default `checkpoints/mnist-small`, 8 frames of 32x32):

- `sr`: spatial 2x super-resolution by reconstruction guidance (Eq. 8) from the area-downsampled
  clip, against bilinear / bicubic / pixel-repeat upsampling and the unguided model, over w_r and
  ancestral vs predictor-corrector sampling.
- `temporal`: interpolation (every other frame known) and prediction (the first frames known),
  replacement vs reconstruction guidance (Eq. 7), against frame-blending / last-frame baselines.
- `extend`: Table 6 on the shipped model: 4x block-autoregressive extension of the model's own
  samples, reconstruction guidance vs replacement, boundary vs within-block coherence.

    python -m scripts.conditional_truth run sr prediction interpolation extend --seed 0 --videos 16 --steps 32
    python -m scripts.conditional_truth report            # Markdown tables + PNG strips

(docs/results.md, "Conditional generation against ground truth", lists the runs behind its tables.)

Modules: `measures` (PSNR, classical upsamplers, digit agreement), `tasks` (the three runs),
`report` (tables over seeds, image strips), `__main__` (the command line).
"""
