"""The FID Inception-v3 in Flax, with its weights read from pytorch-fid's file without PyTorch.

Frechet Inception distance (FID), Inception score, KID and precision/recall are comparable with
published numbers only when computed with one particular network: the TensorFlow Inception-v3 of
2015-12-05 that the original FID code used. pytorch-fid ported it to PyTorch as
``fid_inception_v3`` (torchvision's Inception-v3 with four patched blocks) and publishes the
converted weights as `FID_WEIGHTS_FILE` at `FID_WEIGHTS_URL`. This module is the same network in
Flax Linen (NHWC):

* `FIDInceptionV3`: the network, returning pool3 features ``[N, 2048]`` and the 1008-way logits.
  Its input pipeline is pytorch-fid's default (``resize_input=True, normalize_input=True``):
  bilinear resize to 299x299 as ``F.interpolate(mode="bilinear", align_corners=False)``, then
  [0, 1] mapped to [-1, 1].
* `FIDInceptionA`, `FIDInceptionC`, `FIDInceptionE_1`, `FIDInceptionE_2`: the patched blocks
  (their average pools leave the zero padding out of the mean, as TensorFlow's do; the last
  block max-pools), beside torchvision's unpatched `InceptionB` and `InceptionD`.
* `load_params`: reads pytorch-fid's ``.pth`` file (or an ``.npz`` of the same state dict) with
  `zipfile` and `pickle` only, checks it, and returns Flax variables. `read_state_dict` and
  `params_from_state_dict` are its two halves; `state_dict_from_params` is the inverse.
* `extract`: the jitted, batched feature extractor; the batch is sharded over all local devices.

Modules: `network.py` (the blocks, the input pipeline, `extract`), `weights.py` (state dict <->
variables, `load_params`), `torch_pickle.py` (`read_state_dict`: torch files without torch).

The port's agreement with pytorch-fid is measured by
``experiments/evaluation/check_inception_port.py`` (docs/EVALUATION.md has the numbers).
"""

from gan_jax.evaluation.inception.network import (BN_EPSILON, FEATURE_DIM, INPUT_SIZE, NUM_CLASSES,
                                                  BasicConv2d, FIDInceptionA, FIDInceptionC,
                                                  FIDInceptionE_1, FIDInceptionE_2, FIDInceptionV3,
                                                  InceptionB, InceptionD, extract, resize_bilinear)
from gan_jax.evaluation.inception.torch_pickle import read_state_dict
from gan_jax.evaluation.inception.weights import (FID_WEIGHTS_FILE, FID_WEIGHTS_URL, WEIGHTS_ENV,
                                                  default_weights_path, init_variables, load_params,
                                                  params_from_state_dict, state_dict_from_params,
                                                  variables_template, weights_file)

__all__ = ["BN_EPSILON", "FEATURE_DIM", "INPUT_SIZE", "NUM_CLASSES", "BasicConv2d", "FIDInceptionA",
           "FIDInceptionC", "FIDInceptionE_1", "FIDInceptionE_2", "FIDInceptionV3", "InceptionB",
           "InceptionD", "extract", "resize_bilinear", "read_state_dict", "FID_WEIGHTS_FILE",
           "FID_WEIGHTS_URL", "WEIGHTS_ENV", "default_weights_path", "init_variables", "load_params",
           "params_from_state_dict", "state_dict_from_params", "variables_template", "weights_file"]
