"""ResNet generator and discriminator: SNGAN's CIFAR-10 pair (Miyato et al. 2018, Table 4 and its code).

  generator 'resnet'      z (model.noise_dim, 128 in the paper) -> dense to B x B x g_res_channels[0]
                          (B = g_res_base, 4) -> one up-ResBlock per width of g_res_channels (256, 256,
                          256: 4 -> 8 -> 16 -> 32) -> BN, ReLU -> 3x3 conv to the image's channels -> tanh.
                          Up-ResBlock: BN, ReLU, 2x nearest upsampling, 3x3 conv, BN, ReLU, 3x3 conv;
                          shortcut: upsampling, 1x1 conv.
  discriminator 'resnet'  the optimised first block (3x3 conv, ReLU, 3x3 conv, 2x2 average pooling;
                          shortcut: pooling, 1x1 conv) to d_res_channels[0], then one ResBlock per later
                          width (ReLU, 3x3 conv, ReLU, 3x3 conv, pooling if `d_res_down`; shortcut: 1x1
                          conv and pooling when the width changes or it pools), ReLU, global *sum*
                          pooling, dense to one logit. The paper's CIFAR-10 D: 128 channels, the first
                          two blocks pool (32 -> 16 -> 8), the last two keep 8x8.
  Spectral normalisation of D is `model.d_spectral_norm` (gan_jax/core/penalties.py), as for any D.

Initialisation as the authors' Chainer code: Glorot (Xavier) uniform, with gain sqrt(2) on the 3x3
convolutions inside the residual branches and gain 1 on shortcuts, the dense layers and G's last
convolution: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), fans counting the kernel's taps.

Options from the config: `model.g_norm` ('batch' in SNGAN's G; 'none' drops every BN of G),
`model.attention_res` (a SAGAN self-attention block after the G block and the D block whose output
has that side, gan_jax/models/attention.py), class conditioning (`model.num_classes`: G by
conditional BN or a one-hot label on z, D by projection or ACGAN, gan_jax/models/conditional.py).
D has no batch norm (SNGAN's has none): `model.d_norm` must stay 'none'.
"""

from collections.abc import Sequence
import math

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.errors import UserError
from gan_jax.models import conditional, layers
from gan_jax.models.attention import SelfAttention
from gan_jax.models.dcgan import upsample_2x
from gan_jax.models.norm import BatchNorm, check_norm


def glorot(gain: float = 1.0):
  """Glorot uniform with `gain` (Chainer's `GlorotUniform(scale=gain)`)."""
  return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


def avg_pool_2x(x):
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class GBlock(nn.Module):
  """SNGAN's up-ResBlock."""

  channels: int
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  num_classes: int = 0  # > 0: conditional BN
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, labels=None):
    conv = lambda ch, k, gain, name: nn.Conv(ch, (k, k), padding="SAME", kernel_init=glorot(gain),
                                             dtype=self.dtype, param_dtype=jnp.float32, name=name)

    def bn(h, name):
      if self.norm != "batch":
        return h
      return BatchNorm(self.bn_momentum, self.bn_axis_name, self.num_classes, name=name)(h, train, labels)

    h = upsample_2x(nn.relu(bn(x, "bn_0")), "nearest")
    h = conv(self.channels, 3, math.sqrt(2), "conv_0")(h)
    h = conv(self.channels, 3, math.sqrt(2), "conv_1")(nn.relu(bn(h, "bn_1")))
    shortcut = conv(self.channels, 1, 1.0, "shortcut")(upsample_2x(x, "nearest"))
    return h + shortcut


class DBlock(nn.Module):
  """SNGAN's D ResBlock; `optimized` is the first block (no ReLU before its first conv)."""

  channels: int
  down: bool = True
  optimized: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda ch, k, gain, name: nn.Conv(ch, (k, k), padding="SAME", kernel_init=glorot(gain),
                                             dtype=self.dtype, param_dtype=jnp.float32, name=name)
    h = x if self.optimized else nn.relu(x)
    h = conv(self.channels, 3, math.sqrt(2), "conv_0")(h)
    h = conv(self.channels, 3, math.sqrt(2), "conv_1")(nn.relu(h))
    if self.down:
      h = avg_pool_2x(h)
    if self.optimized:
      shortcut = conv(self.channels, 1, 1.0, "shortcut")(avg_pool_2x(x))
    elif self.down or x.shape[-1] != self.channels:
      shortcut = conv(self.channels, 1, 1.0, "shortcut")(x)
      shortcut = avg_pool_2x(shortcut) if self.down else shortcut
    else:
      shortcut = x
    return h + shortcut


class ResNetGenerator(nn.Module):
  """z [b, noise_dim] (and labels [b]) -> images [b, H, W, C] in [-1, 1]."""

  output_shape: Sequence[int]  # (H, W, C)
  channels: Sequence[int] = (256, 256, 256)
  base: int = 4
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  attention_res: int = 0
  num_classes: int = 0
  cond: str = "cbn"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z, labels=None, train: bool = False):
    cbn = self.num_classes if self.cond == "cbn" else 0
    if self.num_classes and self.cond == "embed":
      z = conditional.concat_label(z, labels, self.num_classes)
    x = nn.Dense(self.base * self.base * self.channels[0], kernel_init=glorot(1.0), dtype=self.dtype,
                 param_dtype=jnp.float32, name="project")(z)
    x = x.reshape(z.shape[0], self.base, self.base, self.channels[0])
    for i, ch in enumerate(self.channels):
      x = GBlock(ch, self.norm, self.bn_momentum, self.bn_axis_name, cbn, self.dtype, name=f"block_{i}")(
          x, train, labels)
      if self.attention_res and x.shape[1] == self.attention_res:
        x = SelfAttention(dtype=self.dtype, name=f"attention_{i}")(x)
    if self.norm == "batch":
      x = BatchNorm(self.bn_momentum, self.bn_axis_name, cbn, name="bn_out")(x, train, labels)
    x = nn.Conv(self.output_shape[-1], (3, 3), padding="SAME", kernel_init=glorot(1.0), dtype=self.dtype,
                param_dtype=jnp.float32, name="conv_out")(nn.relu(x))
    return jnp.tanh(x.astype(jnp.float32))


class ResNetDiscriminator(nn.Module):
  """Images [b, H, W, C] (and labels [b]) -> logits [b] ([b, 1 + num_classes] for ACGAN)."""

  channels: Sequence[int] = (128, 128, 128, 128)
  down: Sequence[bool] = (True, True, False, False)
  attention_res: int = 0
  num_classes: int = 0
  cond: str = "projection"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, labels=None):
    del train  # no dropout, no batch norm: the same function in training and evaluation
    if x.ndim != 4:
      raise UserError(f"the 'resnet' discriminator needs images in NHWC layout, got input of shape "
                      f"{x.shape}; set --config.data.layout=nhwc")
    h, sides = x, []
    for i, (ch, down) in enumerate(zip(self.channels, self.down)):
      h = DBlock(ch, bool(down), optimized=i == 0, dtype=self.dtype, name=f"block_{i}")(h)
      sides.append(h.shape[1])
      if self.attention_res and h.shape[1] == self.attention_res and sides.count(h.shape[1]) == 1:
        h = SelfAttention(dtype=self.dtype, name=f"attention_{i}")(h)
    if self.attention_res and self.attention_res not in sides:
      raise UserError(f"model.attention_res={self.attention_res} matches no discriminator block output "
                      f"(sides {sides})")
    features = jnp.sum(nn.relu(h), axis=(1, 2))  # global sum pooling
    return conditional.d_head(features, labels, self.num_classes, self.cond, glorot(1.0), self.dtype)


def build_generator(mc, example_shape) -> ResNetGenerator:
  """The 'resnet' generator for model config `mc` and examples of `example_shape` (H, W, C)."""
  if len(example_shape) != 3:
    raise UserError(f"the 'resnet' generator makes NHWC images, got examples of shape {tuple(example_shape)}; "
                    "set --config.data.layout=nhwc")
  channels, base = tuple(mc.g_res_channels), int(mc.g_res_base)
  side = base * 2 ** len(channels)
  if not channels or tuple(example_shape[:2]) != (side, side):
    raise UserError(f"the 'resnet' generator makes {side}x{side} images (model.g_res_base {base} doubled "
                    f"once per model.g_res_channels entry, {len(channels)}), but the data is "
                    f"{example_shape[0]}x{example_shape[1]}")
  sides = [base * 2 ** (i + 1) for i in range(len(channels))]
  attention = int(mc.get("attention_res", 0))
  if attention and attention not in sides:
    raise UserError(f"model.attention_res={attention} matches no generator block output (sides {sides})")
  conditional.check(mc)
  return ResNetGenerator(output_shape=tuple(example_shape), channels=channels, base=base,
                         norm=check_norm(mc.get("g_norm", "none"), "model.g_norm"),
                         bn_momentum=float(mc.get("bn_momentum", 0.9)), attention_res=attention,
                         num_classes=int(mc.get("num_classes", 0)), cond=mc.get("g_cond", "embed"),
                         dtype=layers.compute_dtype(mc))


def build_discriminator(mc) -> ResNetDiscriminator:
  """The 'resnet' discriminator for model config `mc` (its image size is checked on first use)."""
  channels, down = tuple(mc.d_res_channels), tuple(bool(d) for d in mc.d_res_down)
  if not channels or len(channels) != len(down):
    raise UserError(f"model.d_res_channels {channels} and model.d_res_down {down} need one entry per block")
  if check_norm(mc.get("d_norm", "none"), "model.d_norm") != "none":
    raise UserError("the 'resnet' discriminator has no batch norm (SNGAN's has none); set model.d_norm='none'")
  conditional.check(mc)
  return ResNetDiscriminator(channels=channels, down=down, attention_res=int(mc.get("attention_res", 0)),
                             num_classes=int(mc.get("num_classes", 0)), cond=mc.get("d_cond", "projection"),
                             dtype=layers.compute_dtype(mc))
