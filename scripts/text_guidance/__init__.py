"""Table 5 of the paper at small scale: classifier-free guidance (Eq. 6) on a caption-conditioned
Moving MNIST model (issue 16).

For each guidance weight w and sampling seed, on a text-conditioned checkpoint (default
`checkpoints/mnist-small-text`, 8 frames of 32x32):

1. N real test-split clips of the model's own Moving MNIST settings (`vdm_fast.evaluation.
   reference_clips`, as `python cli.py evaluate` draws them); one video generated per clip,
   conditioned on that clip's caption (`vdm_fast.inputs.ConditionEncoder`), w =
   `SamplerOptions.guidance_weight`.
2. Caption fidelity of the videos against their captions (`vdm_ref.support.eval.caption_fidelity`:
   digit and motion of a clause on one track; the digit and motion rates beside it), and of the
   real clips with their own captions (the ceiling) and with shuffled captions (the floor).
3. FVD (the real I3D, logits cached by video hash) between the N generated and the N real clips,
   8-frame videos repeated to 16 frames as `evaluate` does; real against real clips of another
   data seed as the floor of FVD at this N.
4. Diversity of K videos of one caption: mean pairwise per-pixel RMS distance, the spread of the
   digit's first-frame centre, and the fraction of the caption satisfied; the same for K real
   clips with that caption (searched in the test split).
5. Sampling seconds (compile included) and the warm seconds per video.

    python -m scripts.text_guidance run --checkpoint checkpoints/mnist-small-text --weights 0 1 2 5 --seeds 0 1 --videos 64 --steps 32
    python -m scripts.text_guidance report          # the Markdown table over seeds

Writes docs/assets/text_guidance/seed<S>.json and seed<S>_w<w>.png (`--out-dir` to put them
elsewhere). Modules: `measure` (generation, fidelity, diversity, FVD), `report` (the table from
the JSON), `__main__` (the command line).
"""
