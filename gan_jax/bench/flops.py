"""FLOPs: analytic counts per training iteration (checked against XLA's in the tests), and the
device's measured matmul rate, which turns them into a physical floor per row."""

import math
import time

import jax
import jax.numpy as jnp

def _taps(size: int, kernel: int, stride: int, transpose: bool = False) -> int:
  """(output position, kernel tap) pairs along one axis that read a real input pixel, not padding.

  'SAME' padding as `lax`: a stride-2 convolution pads (1, 1) for the 4x4 kernel, a stride-1 one
  (1, 1) for 3x3; the 4x4 stride-2 transposed convolution reads a 2x dilated input padded (2, 2).
  """
  if transpose:
    return sum(1 for o in range(2 * size) for t in range(kernel)
               if (o + t - 2) % 2 == 0 and 0 <= (o + t - 2) // 2 < size)
  out = -(-size // stride)
  pad = max((out - 1) * stride + kernel - size, 0) // 2
  return sum(1 for o in range(out) for t in range(kernel) if 0 <= o * stride + t - pad < size)


def layer_macs(config, example_shape):
  """Multiply-accumulates per example of each layer: ({'g': [...], 'd': [...]}) in layer order.

  Convolutions count only the taps that read real pixels (what XLA's cost analysis counts too);
  padding near the borders of these small images is 6-23% of a 4x4 kernel's taps.
  """
  mc = config.model
  if mc.generator == "mlp":
    widths = [mc.noise_dim, *mc.g_hidden, math.prod(example_shape)]
    g = [a * b for a, b in zip(widths[:-1], widths[1:])]
  else:
    h, w, c = example_shape
    n = len(mc.g_channels)
    h, w = h >> n, w >> n
    g = [mc.noise_dim * h * w * mc.g_channels[0]]
    chans = [*mc.g_channels, c]
    for a, b in zip(chans[:-1], chans[1:]):
      if mc.g_upsample == "transposed":
        g.append(_taps(h, 4, 2, transpose=True) * _taps(w, 4, 2, transpose=True) * a * b)
      else:  # a 3x3 convolution on the 2x resized image
        g.append(_taps(2 * h, 3, 1) * _taps(2 * w, 3, 1) * a * b)
      h, w = 2 * h, 2 * w
  if mc.discriminator == "maxout":
    widths = [math.prod(example_shape), *mc.d_hidden]
    d = [a * b * mc.d_pieces for a, b in zip(widths[:-1], widths[1:])] + [widths[-1]]
  else:
    h, w, c = example_shape
    chans = [c, *mc.d_channels]
    d = []
    for a, b in zip(chans[:-1], chans[1:]):
      d.append(_taps(h, 4, 2) * _taps(w, 4, 2) * a * b)
      h, w = h // 2, w // 2
    d.append(h * w * chans[-1])
  return {"g": g, "d": d}


def flops_per_iteration(config, example_shape) -> int:
  """Matmul/conv FLOPs of one training iteration (2 per multiply-accumulate; elementwise work ignored).

  A layer of M MACs costs 2M forward, 2M for its weight gradient and 2M for its input gradient. Input
  gradients stop where nothing upstream is trained: at D's input on the D step (data and samples are
  constants there) and at G's input (the noise) always.
    simultaneous: G fwd, D fwd on 2B, D weight grads on 2B, D input grads on 2B down to layer 2,
                  D input grads on the B samples down to the images (for G's loss), G weight and input
                  grads: 3G - G1 + 7D - 2 D1 forward-costs per example.
    alternating:  the D step (G fwd, D fwd/weight grads on 2B, input grads down to layer 2) and the
                  G step (G and D fwd, D input grads, G weight and input grads): 4G - G1 + 8D - 2 D1.
  """
  macs = layer_macs(config, example_shape)
  g, d = 2 * sum(macs["g"]), 2 * sum(macs["d"])
  g1, d1 = 2 * macs["g"][0], 2 * macs["d"][0]
  if config.update_mode == "simultaneous":
    per_example = 3 * g - g1 + 7 * d - 2 * d1
  else:
    per_example = 4 * g - g1 + 8 * d - 2 * d1
  return config.batch_size * per_example



def matmul_peak_flops(m: int = 200, k: int = 1200, n: int = 1200, seconds: float = 1.0) -> float:
  """FLOP/s of one float32 [m, k] x [k, n] matmul on the default device, best of 3 timings of
  back-to-back dispatches: what the device reaches on the paper model's largest matmul (D and G on
  2 x 100 examples, 1200 wide), the practical peak for the physical floor of these models."""
  x, w = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
  f = jax.jit(lambda x, w: x @ w)
  jax.block_until_ready(f(x, w))
  t0, calls = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds / 10 or calls < 3:
    jax.block_until_ready(f(x, w))
    calls += 1
  calls = max(3, int(calls * 10 / 3))  # ~seconds/3 per timing
  best = float("inf")
  for _ in range(3):
    t0 = time.perf_counter()
    for _ in range(calls):
      y = f(x, w)
    jax.block_until_ready(y)
    best = min(best, (time.perf_counter() - t0) / calls)
  return 2.0 * m * k * n / best
