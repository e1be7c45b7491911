"""Everything around the paper that is not the paper.

`vdm_ref/` at its top level holds the equations (schedule, diffusion, parameterisation, losses,
samplers, guidance, conditioning, metrics) and the network (Sec. 3, Fig. 1). What a working
system also needs lives here, once, backend-free, imported by both backends:

- `data/`: Moving MNIST with captions, video folders, video I/O, joint image-video batches;
- `eval/`: sample-quality measures on Moving MNIST (digit tracker and classifier, coherence,
  caption fidelity);
- `checkpoint.py`: atomic checkpoints in the shared parameter layout, SHA-256-verified on load;
- `assets.py`: hashing, files inside installed `--no-deps` data packages, the cache folder;
- `minilm.py`, `caption_cache.py`: the MiniLM weights and tokenizer, the caption-embedding cache;
- `i3d_weights.py`: DeepMind's I3D weights for FVD / IS, SHA-256-checked;
- `presets.py`: the preset table printed by `python cli.py presets`.
"""

__mirror__ = False
