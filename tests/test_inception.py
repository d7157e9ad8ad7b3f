"""Tests for gan_jax.evaluation.inception without torch or the real weights.

The network runs on random weights; `tests/data/tiny_state_dict*.pth` are small state dicts
written by ``torch.save`` (zip and legacy formats) whose tensors are known aranges, so the
torch-free reader is checked against real PyTorch files. Agreement with pytorch-fid's network
itself is checked by ``experiments/evaluation/check_inception_port.py`` (needs torch).
"""

import collections
import hashlib
import os
import pickle
import shutil
import zipfile

import jax
import numpy as np
import pytest

from gan_jax.errors import UserError
from gan_jax.evaluation import inception

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def variables():
  return inception.init_variables(0)


def _leaves_equal(a, b) -> bool:
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  return ta == tb and all(np.array_equal(x, y) for x, y in zip(la, lb))


# ----------------------------------------------------------------------------------------------
# Reading PyTorch files.


@pytest.mark.parametrize("name", ["tiny_state_dict.pth", "tiny_state_dict_legacy.pth"])
def test_reads_torch_save_files(name):
  sd = inception.read_state_dict(os.path.join(DATA, name))
  a = np.arange(12, dtype=np.float32).reshape(3, 4)
  want = {
      "a": a, "a_t": a.T, "row": a[1],  # a_t and row share a's storage (stride, offset)
      "d": np.arange(3, dtype=np.float64) * 0.5,
      "h": np.array([1.5, -2.0], np.float16),
      "n": np.array(7, np.int64),
      "b": np.array([True, False]),
      "conv.weight": np.arange(12, dtype=np.float32).reshape(2, 3, 1, 2),
  }
  assert list(sd) == list(want)
  for key, value in want.items():
    assert sd[key].dtype == value.dtype, key
    np.testing.assert_array_equal(sd[key], value, err_msg=key)
  assert sd["a_t"].flags.writeable  # a copy, not a view into the file's bytes


def test_refuses_other_pickled_classes(tmp_path):
  # A checkpoint may name any class; only tensors and dicts may be built from it.
  path = tmp_path / "model.pth"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("model/data.pkl", pickle.dumps(collections.Counter(a=1)))
  with pytest.raises(UserError, match="collections.Counter"):
    inception.read_state_dict(path)
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a checkpoint at all")
  with pytest.raises(UserError, match="neither a torch.save checkpoint nor an .npz"):
    inception.read_state_dict(garbage)
  # The legacy format's header pickles are read as plain data too: a global there is refused.
  legacy = tmp_path / "legacy.pth"
  legacy.write_bytes(pickle.dumps(collections.Counter))
  with pytest.raises(UserError, match="neither a torch.save checkpoint nor an .npz"):
    inception.read_state_dict(legacy)


def test_truncated_legacy_file(tmp_path):
  path = tmp_path / "cut.pth"
  data = open(os.path.join(DATA, "tiny_state_dict_legacy.pth"), "rb").read()
  path.write_bytes(data[:-10])
  with pytest.raises(UserError, match="truncated"):
    inception.read_state_dict(path)


# ----------------------------------------------------------------------------------------------
# Mapping to Flax, loading, hash check.


def test_state_dict_mapping(variables):
  sd = inception.state_dict_from_params(variables)
  assert len(sd) == 94 * 5 + 2  # 94 conv blocks (conv weight + 4 batch-norm tensors), fc
  kernel = variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
  weight = sd["Mixed_6b.branch7x7_2.conv.weight"]
  assert kernel.shape == (1, 7, 128, 128) and weight.shape == (128, 128, 1, 7)
  np.testing.assert_array_equal(weight[5, 3, 0, 2], kernel[0, 2, 3, 5])  # OIHW vs HWIO
  np.testing.assert_array_equal(sd["fc.weight"], variables["params"]["fc"]["kernel"].T)
  np.testing.assert_array_equal(sd["Conv2d_1a_3x3.bn.running_var"],
                                variables["batch_stats"]["Conv2d_1a_3x3"]["bn"]["var"])
  # num_batches_tracked, in every torch state dict, is accepted and ignored.
  sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
  assert _leaves_equal(inception.params_from_state_dict(sd), variables)


def test_state_dict_mismatch_is_user_error(variables):
  sd = inception.state_dict_from_params(variables)
  del sd["Mixed_7c.branch_pool.bn.running_mean"]
  with pytest.raises(UserError, match=r"1 missing entries \(Mixed_7c.branch_pool.bn.running_mean"):
    inception.params_from_state_dict(sd)
  sd = inception.state_dict_from_params(variables)
  sd["fc.weight"] = sd["fc.weight"][:1000]  # torchvision's 1000-class head, not the FID one
  with pytest.raises(UserError, match="fc.weight has shape"):
    inception.params_from_state_dict(sd)


def test_basic_conv_matches_pytorch_semantics():
  # A (1, 3) convolution with padding (0, 1) in PyTorch's NCHW / OIHW convention, computed by
  # hand, then batch norm with running statistics and eps 1e-3, then ReLU.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)  # NCHW
  w = rng.standard_normal((3, 2, 1, 3)).astype(np.float32)  # OIHW
  scale, bias = rng.random(3) + 0.5, rng.standard_normal(3)
  mean, var = rng.standard_normal(3), rng.random(3) + 0.1
  xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1)))
  conv = np.zeros((2, 3, 4, 5))
  for o in range(3):
    for i in range(2):
      for kx in range(3):
        conv[:, o] += w[o, i, 0, kx] * xp[:, i, :, kx:kx + 5]
  bn = (conv - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3)
  want = np.maximum(bn * scale[:, None, None] + bias[:, None, None], 0).transpose(0, 2, 3, 1)

  block = inception.BasicConv2d(3, (1, 3), padding=(0, 1))
  variables = {"params": {"conv": {"kernel": w.transpose(2, 3, 1, 0)},
                          "bn": {"scale": scale, "bias": bias}},
               "batch_stats": {"bn": {"mean": mean, "var": var}}}
  got = block.apply(variables, x.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_load_params_npz_and_hash_prefix(variables, tmp_path):
  path = tmp_path / "fid_inception.npz"
  np.savez(path, **inception.state_dict_from_params(variables))
  assert _leaves_equal(inception.load_params(path), variables)  # no hash in the name: no check

  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  good = tmp_path / f"fid_inception-{digest[:8]}.npz"
  shutil.copy(path, good)
  assert _leaves_equal(inception.load_params(good), variables)

  bad = tmp_path / "pt_inception-2015-12-05-6726825d.npz"
  shutil.copy(path, bad)
  with pytest.raises(UserError) as err:
    inception.load_params(bad)
  message = str(err.value)
  assert "\n" not in message and inception.FID_WEIGHTS_URL in message
  assert f"sha256 starts with {digest[:8]}, its name says 6726825d" in message
  assert _leaves_equal(inception.load_params(bad, check_hash=False), variables)


def test_missing_weights_name_the_url(tmp_path, monkeypatch):
  for path in (tmp_path / inception.FID_WEIGHTS_FILE, tmp_path):  # a file, or a folder without it
    with pytest.raises(UserError) as err:
      inception.load_params(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("Inception weights not found at ")
    assert inception.FID_WEIGHTS_URL in message

  # No path: the environment variable, else pytorch-fid's own download location.
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "elsewhere.pth"))
  assert inception.default_weights_path() == str(tmp_path / "elsewhere.pth")
  with pytest.raises(UserError, match="elsewhere.pth"):
    inception.load_params()
  monkeypatch.delenv(inception.WEIGHTS_ENV)
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
  assert inception.default_weights_path() == str(
      tmp_path / "torch" / "hub" / "checkpoints" / inception.FID_WEIGHTS_FILE)


# ----------------------------------------------------------------------------------------------
# The network.


def test_resize_matches_hand_computed_bilinear():
  # PyTorch's bilinear, align_corners=False: output i samples input (i + 0.5) * in / out - 0.5,
  # clamped to the edge pixels, with no antialiasing when downsampling.
  a, b = 1.0, 5.0
  up = np.asarray(inception.resize_bilinear(np.array([a, b]).reshape(1, 1, 2, 1), (1, 4)))
  np.testing.assert_allclose(up.ravel(), [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b],
                             rtol=1e-6)
  x4 = np.array([1.0, 2.0, 4.0, 8.0])
  down = np.asarray(inception.resize_bilinear(x4.reshape(1, 4, 1, 1), (2, 1)))
  np.testing.assert_allclose(down.ravel(), [1.5, 6.0], rtol=1e-6)  # antialias=True: 1.86, 5.43
  x5 = np.array([0.0, 3.0, 6.0, 12.0, 24.0])  # 5 -> 3 samples at 1/3, 2, 11/3
  down = np.asarray(inception.resize_bilinear(x5.reshape(1, 1, 5, 1), (1, 3)))
  np.testing.assert_allclose(down.ravel(), [1.0, 6.0, 12.0 / 3 + 24.0 * 2 / 3], rtol=1e-6)
  # Separable in 2-D: the outer product of two 1-D resizes.
  img = np.outer(x4, x5).reshape(1, 4, 5, 1)
  both = np.asarray(inception.resize_bilinear(img, (2, 3)))[0, :, :, 0]
  np.testing.assert_allclose(both, np.outer([1.5, 6.0], [1.0, 6.0, 20.0]), rtol=1e-6)


def test_pools_leave_out_the_padding():
  ones = np.ones((1, 4, 4, 1), np.float32)
  np.testing.assert_array_equal(inception.network._avg_pool_3x3_same(ones), ones)  # corners too
  neg = -np.ones((1, 4, 4, 1), np.float32)
  np.testing.assert_array_equal(inception.network._max_pool_3x3_same(neg), neg)  # not 0 from padding


def test_blocks_and_network_shapes(variables):
  x = np.random.default_rng(0).random((1, 75, 75, 3), dtype=np.float32)
  pool3, logits = jax.jit(inception.FIDInceptionV3(resize_input=False).apply)(variables, x)
  assert pool3.shape == (1, inception.FEATURE_DIM) and logits.shape == (1, inception.NUM_CLASSES)
  assert np.all(np.isfinite(pool3)) and np.all(np.asarray(pool3) >= 0)  # a mean of ReLUs
  # Block output widths at their grid sizes (35x35, 17x17, 8x8 in the full network).
  rng = jax.random.key(0)
  for block, channels, out in [(inception.FIDInceptionA(32), 192, 256),
                               (inception.InceptionB(), 288, 768),
                               (inception.FIDInceptionC(128), 768, 768),
                               (inception.InceptionD(), 768, 1280),
                               (inception.FIDInceptionE_1(), 1280, 2048),
                               (inception.FIDInceptionE_2(), 2048, 2048)]:
    shapes = jax.eval_shape(lambda b=block, c=channels: b.init_with_output(
        rng, np.zeros((1, 9, 9, c), np.float32)))[0]
    assert shapes.shape[-1] == out, type(block).__name__
  assert inception.FIDInceptionE_2.max_pool and not inception.FIDInceptionE_1.max_pool


def test_extract_sharded_grey_uint8_matches_float_rgb(variables):
  rng = np.random.default_rng(1)
  grey = (rng.random((3, 16, 16)) * 255).astype(np.uint8)  # [N, H, W]: one channel
  devices = jax.local_devices()
  sharded = inception.extract(variables, grey, batch_size=2, devices=devices[:2])
  rgb = np.repeat(grey[..., None].astype(np.float32) / 255, 3, axis=-1)
  single = inception.extract(variables, rgb, batch_size=4, devices=devices[:1])
  for key, width in (("pool3", 2048), ("logits", 1008), ("logits_unbiased", 1008)):
    assert sharded[key].shape == (3, width) and sharded[key].dtype == np.float32
    np.testing.assert_allclose(sharded[key], single[key], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(sharded["logits"] - sharded["logits_unbiased"],
                             np.broadcast_to(variables["params"]["fc"]["bias"], (3, 1008)),
                             atol=1e-6)


def test_extract_rejects_bad_images(variables):
  with pytest.raises(UserError, match="1 or 3 channels"):
    inception.extract(variables, np.zeros((1, 8, 8, 4), np.uint8))
  with pytest.raises(UserError, match=r"\[0, 1\]"):
    inception.extract(variables, np.full((1, 8, 8, 3), -1.0, np.float32))
  assert inception.extract(variables, np.zeros((0, 8, 8, 3), np.uint8))["pool3"].shape == (0, 2048)
