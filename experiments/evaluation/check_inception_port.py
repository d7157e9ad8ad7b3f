"""Checks gan_jax's Flax FID Inception against pytorch-fid's PyTorch one, on random weights.

  python experiments/evaluation/check_inception_port.py [--seed=0] [--rtol=1e-4] [--rtol64=1e-10]

What it does:

1. Builds pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True,
   use_fid_inception=True)`` without downloading anything: ``load_state_dict_from_url`` is
   replaced by a function returning the freshly built network's own state dict.
2. Randomises every weight (He-normal convolutions, batch-norm scales and shifts, a random
   ``fc``) and gives the batch norms non-trivial running statistics: they are accumulated from
   forward passes in training mode over random images like those of step 4, then perturbed a
   little, so no layer is an identity and the features keep a moderate scale (largest pool3
   values from a few units to a few tens, not the hundreds a badly calibrated network reaches).
3. Saves the state dict with ``torch.save`` in both PyTorch formats (the zip format of
   PyTorch >= 1.6 and the legacy one, which older files such as pytorch-fid's may use), loads
   each with ``gan_jax.evaluation.inception.load_params`` (no torch involved) and checks that
   every tensor arrived unchanged.
4. Runs both networks on the same random images in [0, 1] (smooth blobs plus pixel noise; 8 at
   64x64, 8 at 299x299 and 4 at 400x400, so the resize is checked upsampling, at identity and
   downsampling), first in float32 through ``inception.extract`` (what gan_jax computes features
   with), then both networks in float64, and prints the maximum absolute and relative differences
   of the resized inputs, the pool3 features and the logits (relative: the maximum absolute
   difference over the reference's largest magnitude). Float32 differences are rounding, amplified
   by depth; float64 shows whether anything else is left. It exits 1 if a relative difference
   exceeds ``--rtol`` (float32) or ``--rtol64`` (float64).

Environment: both halves run in one process, so one environment holds torch, torchvision and
pytorch-fid beside gan_jax and its requirements (jax, flax, ...); CPU builds are enough and
nothing is downloaded at run time. Keep it apart from the project's own environment, which has no
torch. torchvision must be the release built for the installed torch (pytorch-fid imports it),
e.g. torch 2.14.1 with torchvision 0.29.1, as measured:

  python3 -m venv fidcheck-venv && . fidcheck-venv/bin/activate
  pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid && pip install -e .

It takes one to three minutes on a 2-core CPU. The measured differences are in
docs/EVALUATION.md.
"""

from __future__ import annotations  # the torch annotations below stay unevaluated without torch

import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np

try:
  import torch
  import torch.nn.functional as F
  from pytorch_fid import inception as pfi
except ImportError as _missing:  # --help still works; anything else is one error line
  if __name__ == "__main__" and not {"-h", "--help"} & set(sys.argv[1:]):
    sys.exit(f"error: this check needs PyTorch and pytorch-fid ({_missing}); "
             "pip install torch pytorch-fid (and the torchvision built for that torch)")

from gan_jax.evaluation import inception

IMAGE_SIZES = (64, 299, 400)  # Upsampled, not resized, downsampled to 299x299.


def build_random_pytorch_fid(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
  """pytorch-fid's InceptionV3 (pool3 block) and its inner Inception3 (for ``fc``), random."""
  built = []
  original = pfi._inception_v3  # pylint: disable=protected-access

  def capture(*args, **kwargs):
    model = original(*args, **kwargs)
    built.append(model)
    return model

  # fid_inception_v3 patches the blocks of the network `_inception_v3` built, then loads the
  # downloaded state dict into it; hand it the network's own state dict instead.
  pfi._inception_v3 = capture  # pylint: disable=protected-access
  pfi.load_state_dict_from_url = lambda *args, **kwargs: built[-1].state_dict()
  try:
    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
  finally:
    pfi._inception_v3 = original  # pylint: disable=protected-access
  net = built[-1]

  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
      elif isinstance(module, torch.nn.BatchNorm2d):
        module.weight.copy_(0.4 + 0.6 * torch.rand(module.weight.shape, generator=gen))
        module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
        module.reset_running_stats()
        module.momentum = None  # Cumulative average over the calibration batches.
    net.fc.weight.copy_(torch.randn(net.fc.weight.shape, generator=gen) / 2048 ** 0.5)
    net.fc.bias.copy_(torch.randn(net.fc.bias.shape, generator=gen))

    # Running statistics from real activations, so every layer's output stays O(1) as in the
    # trained network, then perturbed so they are not the batch's own statistics either.
    # Calibration images like `main`'s, of each size: activation statistics depend on both.
    model.train()
    rng = np.random.default_rng(seed + 1)
    for size in IMAGE_SIZES:
      model(torch.from_numpy(random_images(rng, 8, size)).permute(0, 3, 1, 2))
    model.eval()
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        std = module.running_var.sqrt()
        module.running_mean.add_(0.05 * std * torch.randn(std.shape, generator=gen))
        module.running_var.mul_(0.9 + 0.2 * torch.rand(std.shape, generator=gen))
  return model, net


def random_images(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
  """``[count, size, size, 3]`` float32 images in [0, 1]: smooth blobs plus pixel noise.

  The smooth part (16x16 noise upsampled) keeps the activation statistics alike at every size;
  the pixel noise is what an antialiasing resize would visibly blur when downsampling.
  """
  coarse = torch.from_numpy(rng.random((count, 3, 16, 16), dtype=np.float32))
  smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
  noise = torch.from_numpy(rng.random((count, 3, size, size), dtype=np.float32))
  images = (0.75 * smooth + 0.25 * noise).clamp(0, 1)
  return images.permute(0, 2, 3, 1).contiguous().numpy()


def max_diffs(got: np.ndarray, want: np.ndarray) -> tuple[float, float, float]:
  """(max |got - want|, that over max |want|, max |want|)."""
  scale = float(np.max(np.abs(want)))
  abs_diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
  return abs_diff, abs_diff / scale, scale


def compare(model, net, variables, float64: bool, seed: int, rtol: float) -> bool:
  """Runs both networks on the same images; prints the differences; whether all are <= rtol."""
  rng = np.random.default_rng(seed)
  if float64:
    model, net = model.double(), net.double()
    jax.config.update("jax_enable_x64", True)
    variables = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), variables)
    apply = jax.jit(inception.FIDInceptionV3().apply)
  ok = True
  for size, count in zip(IMAGE_SIZES, (8, 8, 4)):
    images = random_images(rng, count, size)
    if float64:
      images = images.astype(np.float64)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
      resized_t = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
      pool3_t = model(x)[0].flatten(1)
      logits_t = net.fc(pool3_t)
    resized_j = np.asarray(inception.resize_bilinear(images, (299, 299)))
    if float64:  # The network itself, in float64.
      pool3_j, logits_j = (np.asarray(a) for a in apply(variables, images))
    else:  # What gan_jax computes features with.
      out = inception.extract(variables, images, batch_size=count)
      pool3_j, logits_j = out["pool3"], out["logits"]
    rows = [("resize", resized_j, resized_t.permute(0, 2, 3, 1).numpy()),
            ("pool3", pool3_j, pool3_t.numpy()),
            ("logits", logits_j, logits_t.numpy())]
    for name, got, want in rows:
      want_dtype = np.float64 if float64 else np.float32
      assert got.dtype == want.dtype == want_dtype, (name, got.dtype, want.dtype)
      abs_diff, rel_diff, scale = max_diffs(got, want)
      print(f"{'float64' if float64 else 'float32'} {count} images {size}x{size}  {name:6s} "
            f"max abs diff {abs_diff:.2e}  max rel diff {rel_diff:.2e}  "
            f"(reference max |x| {scale:.3g})")
      ok &= rel_diff <= rtol
    if size > 299 and not float64:
      # What jax.image.resize's default (antialias=True) would give: not pytorch-fid's resize.
      default = np.asarray(jax.image.resize(images, (count, 299, 299, 3), "bilinear"))
      print(f"  (jax.image.resize with its default antialias=True instead: resize max abs diff "
            f"{max_diffs(default, rows[0][2])[0]:.2e})")
  return ok


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rtol", type=float, default=1e-4,
                      help="fail above this float32 difference over the reference's max |x|")
  parser.add_argument("--rtol64", type=float, default=1e-10,
                      help="the same in float64")
  args = parser.parse_args(argv)
  torch.set_num_threads(os.cpu_count() or 1)
  print(f"torch {torch.__version__}, jax {jax.__version__}, seed {args.seed}")

  model, net = build_random_pytorch_fid(args.seed)
  state_dict = {k: v.detach().numpy() for k, v in net.state_dict().items()}

  ok = True
  with tempfile.TemporaryDirectory() as tmp:
    variables = None
    for fmt, zip_format in (("zip", True), ("legacy", False)):
      path = os.path.join(tmp, f"random_fid_inception_{fmt}.pth")
      torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zip_format)
      start = time.perf_counter()
      loaded = inception.read_state_dict(path)
      same = (set(loaded) == set(state_dict)
              and all(np.array_equal(loaded[k], state_dict[k])
                      and loaded[k].dtype == state_dict[k].dtype for k in state_dict))
      variables = inception.load_params(path)
      print(f"{fmt:6s} .pth ({os.path.getsize(path) / 1e6:.1f} MB): {len(loaded)} tensors read in "
            f"{time.perf_counter() - start:.2f} s, identical to torch's: {same}")
      ok &= same

  ok &= compare(model, net, variables, False, args.seed, args.rtol)
  ok &= compare(model, net, variables, True, args.seed, args.rtol64)
  print("PASS" if ok else "FAIL")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
