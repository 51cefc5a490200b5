"""Audio from decoded embeddings.

- :mod:`~decoding.generation.resynthesis`: Griffin-Lim from a decoded ``logmel`` (no weights);
- :mod:`~decoding.generation.text_to_music`: MusicGen prompted with retrieved captions (transformers);
- :mod:`~decoding.generation.latent_diffusion`: a CLAP-conditioned latent diffusion model (diffusers,
  the ``generation`` extra), conditioned on a decoded CLAP audio embedding;
- :mod:`~decoding.generation.audio`: wav files.

Each module imports its heavy libraries only when used.
"""
