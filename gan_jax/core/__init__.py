"""The GAN itself: the training state and its one pure update, built from a config.

  gan.py        GANState, GAN (noise, G, D, the k-D-steps-then-G update, scanned), params_sha256
  build.py      build_gan(config, data): models, losses, penalties and optimizers from the config
  losses.py     losses from logits: minimax, non-saturating, least squares, hinge, Wasserstein
  penalties.py  gradient penalties (WGAN-GP, zero-centred, R1) and spectral normalisation
  optim.py      the paper's SGD schedule, SGD, Adam
  rng.py        every PRNG stream's number
"""
