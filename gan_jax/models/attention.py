"""SAGAN's self-attention block (Zhang et al. 2019), for the 'resnet' models at one feature-map size.

For a feature map x with C channels and N = H * W positions (Zhang et al., Section 3):

  f(x) = W_f x,  g(x) = W_g x,  h(x) = W_h x     1x1 convolutions to C' = max(C / 8, 1) channels
  s_ij = f(x_i)^T g(x_j),  beta_ji = softmax_i(s_ij)  (position j attends over every position i)
  o_j  = W_v (sum_i beta_ji h(x_i))                    1x1 convolution back to C channels
  y    = gamma * o + x                                 gamma a learned scalar, initialised to 0

so the block starts as the identity and learns how much non-local evidence to mix in. Every example
attends within itself: the block needs no batch, and works under per-example D application.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class SelfAttention(nn.Module):
  """y = gamma * attention(x) + x over the H x W positions of NHWC `x`."""

  kernel_init: nn.initializers.Initializer = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    inner = max(c // 8, 1)
    conv = lambda ch, name: nn.Conv(ch, (1, 1), use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype,
                                    param_dtype=jnp.float32, name=name)
    f = conv(inner, "f")(x).reshape(b, h * w, inner)
    g = conv(inner, "g")(x).reshape(b, h * w, inner)
    v = conv(inner, "h")(x).reshape(b, h * w, inner)
    scores = jnp.einsum("bic,bjc->bji", f.astype(jnp.float32), g.astype(jnp.float32))  # [b, j, i]
    beta = jax.nn.softmax(scores, axis=-1)
    o = jnp.einsum("bji,bic->bjc", beta, v.astype(jnp.float32)).reshape(b, h, w, inner)
    o = conv(c, "v")(o.astype(self.dtype))
    gamma = self.param("gamma", nn.initializers.zeros, ())
    return x + gamma * o.astype(x.dtype)
