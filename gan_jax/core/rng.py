"""Every PRNG stream of gan_jax, in one place.

A run has one root key, `PRNGKey(config.seed)`, and never advances it: every random draw folds
numbers into it (`jax.random.fold_in`), so any draw can be recomputed from (seed, step, example)
alone, whatever the device count and however often the run was resumed. The numbers below are those
folds; two streams with the same parent must never share a number.

Streams of the root key:
  TRAIN      iteration t uses fold_in(fold_in(root, TRAIN), t); its phase j (the k D steps, then G's
             step) folds in j, then splits one key per example of the global batch
  DATA       the data order: epoch e's permutation is fold_in(fold_in(root, DATA), e)
  SAMPLES    the fixed noise batch of the sample grids
  INIT       the initial parameters of G and D (split in two)
Streams of one example's key (per phase):
  NOISE, DROP_REAL, DROP_FAKE   its noise vector and the dropout masks of D on its real/fake example
  PENALTY    the interpolation point of a gradient penalty
  AUG_REAL, AUG_FAKE   DiffAugment of its real/fake example (`loss.augment`, gan_jax/core/augment.py)
  BCR_REAL, BCR_FAKE   the augmented copy of its real/fake example in consistency regularisation
  LABEL      the class label of its generated example (class-conditional G: uniform over classes)
  DRAGAN     DRAGAN's perturbation of its real example (`loss.penalty='dragan'`)
Streams of `PRNGKey(seed)` used after training (they never touch the training draws):
  EVAL       the samples a sweep scores
  READER     `gan_jax.run.reader`: the samples drawn from a trained run
  FIGURE3    the paper's Figure 3 interpolation end points
  FIGURE1_D, FIGURE1_G   the paper's Figure 1 one-player updates (folded into the state's key)
"""

# Streams of the root key.
TRAIN, DATA, SAMPLES = 0, 1, 2
INIT = 1_000_003
# Streams of one example's key.
NOISE, DROP_REAL, DROP_FAKE, PENALTY = 0, 1, 2, 3
AUG_REAL, AUG_FAKE, BCR_REAL, BCR_FAKE, LABEL, DRAGAN = 4, 5, 6, 7, 8, 9
# Streams of PRNGKey(seed) outside training.
FIGURE3 = 3
EVAL = 7
READER = 2014
FIGURE1_D, FIGURE1_G = 7919, 7927
