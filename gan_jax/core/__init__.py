"""The GAN itself: the training state and its one pure update, built from a config.

  gan.py        GAN (noise, G, D, the k-D-steps-then-G update, scanned), params_sha256
  state.py      GANState, whose optional parts (EMA, batch statistics) are absent while off
  build.py      build_gan(config, data): models, losses, penalties, optimizers and components
  losses.py     losses from logits: minimax, non-saturating, least squares, hinge, Wasserstein
  penalties.py  gradient penalties (WGAN-GP, zero-centred, R1, DRAGAN) and spectral normalisation
  optim.py      the paper's SGD schedule, SGD, Adam; learning-rate schedules and presets
  rng.py        every PRNG stream's number
  nets.py       G's and D's forward passes in the update: labels, batch norm, DiffAugment
  ema.py        the moving average of G's parameters
  augment.py    differentiable augmentations (DiffAugment, consistency regularisation)
  regularizers.py  consistency regularisation, lazy penalties, weight clipping, ACGAN's losses
"""
