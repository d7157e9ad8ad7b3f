"""Many runs in one program (gan_jax.vmap): each vmapped member against the same run trained
alone, on toy data (seeds and a learning rate vmapped) and on image data across an epoch boundary
(each member's own data order); a population sharded over the 8 test devices against the same
members on one device and alone."""

import functools
import json

import jax
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from gan_jax import vmap as vmap_lib
from gan_jax.core import build
from gan_jax.data import pipeline
from gan_jax.errors import UserError


def _tree_max_diff(a, b):
  diffs = [np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0)
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  return float(max(diffs))


@functools.cache
def _solo_program(config_json: str, num_steps: int):
  """(init, train_steps) of a config trained alone, as gan_jax.train does it; compiled once per
  config apart from the seed (the seed is data, not part of the program)."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  data = pipeline.build_data(config)
  gan = build.build_gan(config, data)
  mean = data.mean_example if config.model.g_bias_from_data else None
  init = jax.jit(lambda seed: gan.init(seed, mean))
  return init, jax.jit(functools.partial(gan.train_steps, num_steps=num_steps)), data


def _solo(config, num_steps):
  c = config.copy_and_resolve_references()
  c.seed = 0
  init, train_steps, data = _solo_program(c.to_json(), num_steps)
  return train_steps(init(config.seed), data.arrays)


def _toy(seed, g_lr, d_weight=1.0):
  c = load_config("mog_2d", "smoke")
  c.parallel.mode = "none"
  c.batch_size = 16
  c.model.noise_dim = 4
  c.model.g_hidden = c.model.d_hidden = (8,)
  # Plain SGD: Adam divides by sqrt(second moment), which turns float-rounding differences in
  # near-zero gradients into lr-sized steps; SGD keeps them at rounding size, so the comparison can
  # be tight.
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.5
  c.optimizer.g_lr, c.optimizer.d_lr = g_lr, 0.05
  c.loss.d_weight = d_weight
  c.seed = seed
  return c


@pytest.fixture(scope="module")
def toy_group():
  # Members 0-2 are compared with solo runs; member 3's learning rate makes it diverge.
  configs = [_toy(0, 0.05), _toy(1, 0.05), _toy(2, 0.02, d_weight=0.5), _toy(3, 1e30)]
  group = vmap_lib.VmapGroup.build(configs)
  states, history, info = vmap_lib.train(group, num_steps=8, steps_per_dispatch=8, log_every=4)
  return configs, group, states, history, info


def test_members_match_solo_runs_with_other_seeds_and_hyperparameters(toy_group):
  configs, group, states, history, _ = toy_group
  assert sorted(group.varying) == ["loss.d_weight", "optimizer.g_lr"]
  for i, config in enumerate(configs[:3]):
    solo, metrics = _solo(config, 8)
    member = group.member(states, i)
    assert _tree_max_diff(member, solo) < 1e-6, i
    for name in ("d_loss", "d_grad_norm", "g_grad_norm"):  # norms: measured at the logged steps only
      np.testing.assert_allclose(history[name][i], np.asarray(metrics[name])[[3, 7]], rtol=1e-5, err_msg=name)
  # Different seeds and hyperparameters really trained different runs.
  assert _tree_max_diff(group.member(states, 0).g_params, group.member(states, 1).g_params) > 1e-3
  np.testing.assert_array_equal(history["step"], [4, 8])


def test_groups_differing_only_in_seeds_share_one_compiled_program(toy_group):
  configs, group, states, _, _ = toy_group
  reseeded = [c.copy_and_resolve_references() for c in configs]
  for i, c in enumerate(reseeded):
    c.seed = 10 + i
  again = vmap_lib.VmapGroup.build(reseeded, group.data)
  # `train` dispatched 4 steps at a time (a log every 4), gradient norms at the last.
  assert again.cache_key(4, "last") == group.cache_key(4, "last") != group.cache_key(4)
  out, _ = again.run(again.init(), 4, "last")
  assert again.compile_time_s == 0  # the first group's program, not a new compilation
  assert _tree_max_diff(again.member(out, 1).g_params, group.member(states, 1).g_params) > 1e-3
  # A vmappable value that does not vary is a constant of the program: another value, another key.
  other_d_lr = [c.copy_and_resolve_references() for c in configs]
  for c in other_d_lr:
    c.optimizer.d_lr = 0.07
  assert vmap_lib.VmapGroup.build(other_d_lr, group.data).cache_key(8) != group.cache_key(8)


def test_a_diverging_member_is_reported_and_leaves_the_others_alone(toy_group):
  _, _, _, history, info = toy_group
  assert info["nonfinite_step"][:3] == [None, None, None]
  assert info["nonfinite_step"][3] is not None and 1 <= info["nonfinite_step"][3] <= 8
  assert np.all(np.isfinite(history["d_loss"][:3]))
  assert info["iters_per_s"] > 0


def test_image_members_keep_their_own_data_order_across_epochs():
  """digits: 1,500 examples, batch 100, so step 16 starts epoch 2 with a new permutation per seed.
  Dropout in D and the paper's SGD schedule run too."""
  configs = []
  for seed in (0, 1):
    c = load_config("digits", "smoke")
    c.parallel.mode = "none"
    c.model.noise_dim = 8
    c.model.g_hidden = (16,)
    c.model.d_hidden, c.model.d_pieces = (8,), 2
    c.optimizer.name = "paper_sgd"
    c.optimizer.g_lr = c.optimizer.d_lr = 0.05
    c.seed = seed
    configs.append(c)
  group = vmap_lib.VmapGroup.build(configs)
  states, _ = group.run(group.init(), 18)
  assert int(states.data.epoch) == 1 and int(states.data.position) == 3
  assert states.data.perm.shape == (2, 1500)
  assert not np.array_equal(states.data.perm[0], states.data.perm[1])
  solo, _ = _solo(configs[1], 18)
  member = group.member(states, 1)
  np.testing.assert_array_equal(member.data.perm, solo.data.perm)
  assert _tree_max_diff(member, solo) < 1e-6


def test_new_epoch_test_stays_a_cond_under_vmap():
  """With the data position shared, the sampler's lax.cond is not turned into a select that would
  draw a permutation for every member at every step."""
  configs = [load_config("digits", "smoke") for _ in range(2)]
  for i, c in enumerate(configs):
    c.seed, c.model.g_hidden, c.model.d_hidden, c.model.noise_dim = i, (4,), (4,), 2
  group = vmap_lib.VmapGroup.build(configs)
  states = jax.eval_shape(group.init)  # traced, not compiled
  axes = vmap_lib.state_axes(states)
  fn = jax.vmap(lambda s, a: group.gan.train_step(s, a)[0], in_axes=(axes, None), out_axes=axes)
  jaxpr = str(jax.make_jaxpr(fn)(states, group.arrays()))
  assert " cond[" in jaxpr


def test_runs_that_differ_in_a_static_key_cannot_share_a_program():
  a, b = _toy(0, 0.05), _toy(1, 0.05)
  b.k_disc_steps = 2
  assert vmap_lib.program_key(a) != vmap_lib.program_key(b)
  with pytest.raises(UserError, match="runs differing in k_disc_steps cannot share one vmapped program"):
    vmap_lib.VmapGroup.build([a, b], pipeline.build_data(a))
  c = _toy(5, 0.01, d_weight=2.0)
  c.log_every = 7  # driving the loop is not training: still one program
  assert vmap_lib.program_key(a) == vmap_lib.program_key(c)


# ---------------------------------------------------------------------------- across devices
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_population_over_8_devices_equals_one_device_and_solo_runs(optimizer):
  """8 members (seeds and two learning rates) as one program over a mesh of 8 devices: under SGD
  bit for bit the members of the same group on one device, and their solo runs; under Adam within
  rounding (measured 3e-8 after 20 steps). The program has no collective: each device trains its
  members alone."""
  configs = [_toy(i, 0.05 if i % 2 else 0.02) for i in range(8)]
  for c in configs:
    c.optimizer.name = optimizer
  sharded = vmap_lib.VmapGroup.build(configs, devices=8)
  single = vmap_lib.VmapGroup.build(configs, sharded.data, devices=1)
  assert (sharded.num_devices, single.num_devices) == (8, 1)
  states = sharded.init()
  runs = jax.sharding.PartitionSpec("runs")
  assert all(x.sharding.spec == runs for x in jax.tree.leaves((states.g_params, states.d_opt_state)))
  assert states.step.sharding.is_fully_replicated
  assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded.arrays()))
  s8, m8 = sharded.run(states, 8)
  s1, m1 = single.run(single.init(), 8)
  tol = 0.0 if optimizer == "sgd" else 1e-6
  assert _tree_max_diff(s8, s1) <= tol
  np.testing.assert_allclose(m8["d_loss"], m1["d_loss"], rtol=tol, atol=tol)
  for i in (0, 5):
    solo, _ = _solo(configs[i], 8)
    assert _tree_max_diff(sharded.member(s8, i), solo) <= (1e-6 if optimizer == "sgd" else tol)
  hlo = sharded._compiled(8).as_text()  # pylint: disable=protected-access
  assert not [op for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
              if op in hlo]


def test_device_counts_for_groups():
  assert jax.local_device_count() == 8  # tests/conftest.py
  assert vmap_lib.group_devices(16) == 8 and vmap_lib.group_devices(6) == 1  # automatic
  assert vmap_lib.group_devices(6, 8) == 2 and vmap_lib.group_devices(8, 4) == 4
  with pytest.raises(UserError, match="--devices=9, but this process sees 8 local devices"):
    vmap_lib.group_devices(8, 9)
  with pytest.raises(UserError, match="3 members cannot be shared evenly by 2 device"):
    vmap_lib.VmapGroup.build([_toy(i, 0.05) for i in range(3)], devices=2)
