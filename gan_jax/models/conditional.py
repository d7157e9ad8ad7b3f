"""Class conditioning of G's input and D's output (`model.num_classes > 0`).

Generator input ('embed', `model.g_cond`): the one-hot label concatenated to z (Mirza & Osindero
2014). The other choice, 'cbn', conditions every batch norm of G instead (gan_jax/models/norm.py).

Discriminator head, on D's final features phi(x) [b, F] (`model.d_cond`):

  projection  logit = w . phi(x) + b + e_y . phi(x), e_y = row y of a learned [num_classes, F]
              matrix (Miyato & Koyama 2018, eq. 3, with psi linear). The matrix is a bias-free dense
              layer on the one-hot label, so its parameter is a `kernel` and `model.d_spectral_norm`
              normalises it too, as the paper's SNEmbedID does.
  acgan       logit = w . phi(x) + b, and class logits W_c phi(x) + b_c [b, num_classes] (Odena et
              al. 2017): D's output is [b, 1 + num_classes]; gan_jax/core/nets.py splits it and the
              classification losses are in gan_jax/core/regularizers.py.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.errors import UserError

G_CONDITIONS = ("embed", "cbn")
D_CONDITIONS = ("projection", "acgan")


def check(mc) -> None:
  """Raises a UserError for unknown conditioning names or a negative class count."""
  if mc.get("num_classes", 0) < 0:
    raise UserError(f"model.num_classes must be >= 0 (0 = unconditional), got {mc.num_classes}")
  if mc.get("g_cond", "embed") not in G_CONDITIONS:
    raise UserError(f"unknown model.g_cond {mc.g_cond!r}; choose one of {list(G_CONDITIONS)}")
  if mc.get("d_cond", "projection") not in D_CONDITIONS:
    raise UserError(f"unknown model.d_cond {mc.d_cond!r}; choose one of {list(D_CONDITIONS)}")


def concat_label(z, labels, num_classes: int):
  """[b, d] noise and int labels [b] -> [b, d + num_classes]: z with the one-hot label appended."""
  if labels is None:
    raise UserError("a class-conditional generator needs labels (model.num_classes > 0)")
  return jnp.concatenate([z, jax.nn.one_hot(labels, num_classes, dtype=z.dtype)], axis=-1)


def d_head(features, labels, num_classes: int, cond: str, kernel_init, dtype, name_prefix: str = ""):
  """D's output from features [b, F]: logits [b] (unconditional or projection) or [b, 1 + C] (acgan).

  Must be called inside a compact module (it creates the 'logit' layer and, when conditional, the
  'embed' or 'classes' layer).
  """
  dense = lambda n, name, bias=True: nn.Dense(n, use_bias=bias, kernel_init=kernel_init, dtype=dtype,
                                              param_dtype=jnp.float32, name=name_prefix + name)
  logit = dense(1, "logit")(features)[:, 0].astype(jnp.float32)
  if num_classes <= 0:
    return logit
  if labels is None:
    raise UserError("a class-conditional discriminator needs labels (model.num_classes > 0)")
  if cond == "projection":
    e = dense(features.shape[-1], "embed", bias=False)(jax.nn.one_hot(labels, num_classes, dtype=features.dtype))
    return logit + jnp.sum(e.astype(jnp.float32) * features.astype(jnp.float32), axis=-1)
  classes = dense(num_classes, "classes")(features).astype(jnp.float32)
  return jnp.concatenate([logit[:, None], classes], axis=-1)
