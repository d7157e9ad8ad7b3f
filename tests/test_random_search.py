"""Tests for gan_jax.sweep.search: random-search spaces, their checks, and reproducible sampling."""

import json
import math

import numpy as np
import pytest

from gan_jax.errors import UserError
from gan_jax.sweep import search

SPACE = {
    "optimizer.g_lr": search.loguniform(1e-5, 1e-2),
    "loss.name": search.choice(["non_saturating", "hinge", "wasserstein"]),
    "optimizer.b1": search.uniform(0.0, 0.9),
    "k_disc_steps": {"kind": "randint", "low": 1, "high": 5},
}


def test_reproducible_labelled_and_json_plain():
  a = search.sample_configs(SPACE, 20, seed=3)
  assert a == search.sample_configs(SPACE, 20, seed=3)
  assert a != search.sample_configs(SPACE, 20, seed=4)
  assert list(a) == [f"r{i:03d}" for i in range(20)]
  assert all(list(over) == list(SPACE) for over in a.values())
  assert json.loads(json.dumps(a)) == a  # plain Python values: they go into configs and result.json
  assert all(type(over["k_disc_steps"]) is int and type(over["optimizer.b1"]) is float for over in a.values())


def test_more_trials_and_more_keys_keep_earlier_values():
  few = search.sample_configs(SPACE, 5, seed=0)
  many = search.sample_configs(SPACE, 50, seed=0)
  assert {k: many[k] for k in few} == few  # a grown search resumes its finished trials
  more_keys = search.sample_configs({**SPACE, "model.z_dim": search.choice([32, 64])}, 5, seed=0)
  assert all({k: v for k, v in more_keys[t].items() if k in SPACE} == few[t] for t in few)
  reordered = search.sample_configs(dict(reversed(list(SPACE.items()))), 5, seed=0)
  assert all(reordered[t] == few[t] for t in few)


def test_values_inside_bounds_and_distributions_as_specified():
  trials = search.sample_configs(SPACE, 4001, seed=1)
  lr = np.array([t["optimizer.g_lr"] for t in trials.values()])
  b1 = np.array([t["optimizer.b1"] for t in trials.values()])
  k = np.array([t["k_disc_steps"] for t in trials.values()])
  names = [t["loss.name"] for t in trials.values()]
  assert lr.min() >= 1e-5 and lr.max() <= 1e-2 and b1.min() >= 0 and b1.max() < 0.9
  assert set(k.tolist()) == {1, 2, 3, 4, 5}  # randint includes both ends
  assert set(names) == {"non_saturating", "hinge", "wasserstein"}
  # Log-uniform: the median is the geometric mean of the bounds (10**-3.5), each decade holds a third.
  assert math.log10(np.median(lr)) == pytest.approx(-3.5, abs=0.05)
  per_decade = np.histogram(np.log10(lr), bins=[-5, -4, -3, -2])[0] / lr.size
  assert per_decade == pytest.approx([1 / 3] * 3, abs=0.03)
  assert np.median(b1) == pytest.approx(0.45, abs=0.03)
  assert np.bincount(k)[1:] / k.size == pytest.approx([0.2] * 5, abs=0.03)


@pytest.mark.parametrize("space, message", [
    ({"a": search.Uniform(1.0, 1.0)}, "low 1 is not below high 1"),
    ({"a": {"kind": "uniform", "low": 2, "high": 1}}, "not below high"),
    ({"a": {"kind": "loguniform", "low": 0, "high": 1}}, "loguniform needs positive bounds"),
    ({"a": {"kind": "loguniform", "low": -1e-3, "high": 1}}, "positive bounds"),
    ({"a": {"kind": "choice", "options": []}}, "choice has no options"),
    ({"a": {"kind": "choice", "options": "hinge"}}, "must be a list"),
    ({"a": {"kind": "normal", "low": 0, "high": 1}}, "kind 'normal' is not one of"),
    ({"a": {"kind": "uniform", "low": 0}}, "missing high"),
    ({"a": {"kind": "uniform", "low": 0, "high": 1, "step": 2}}, "unknown step"),
    ({"a": {"kind": "uniform", "low": "0", "high": 1}}, "low must be a finite number"),
    ({"a": {"kind": "uniform", "low": 0, "high": math.inf}}, "high must be a finite number"),
    ({"a": {"kind": "randint", "low": 1.5, "high": 3}}, "low must be a finite integer"),
    ({"a": {"kind": "randint", "low": 3, "high": 1}}, "above high"),
    ({"a": 0.5}, "not a distribution"),
    ({}, "non-empty dict"),
])
def test_bad_specs_raise_one_line_user_errors(space, message):
  with pytest.raises(UserError, match=message) as e:
    search.sample_configs(space, 3, seed=0)
  assert "\n" not in str(e.value)


def test_constructors_check_too_and_bad_n_or_seed():
  with pytest.raises(UserError, match="loguniform"):
    search.loguniform(0.0, 1.0)
  with pytest.raises(UserError, match="no options"):
    search.choice([])
  with pytest.raises(UserError, match="positive integer"):
    search.sample_configs(SPACE, 0, seed=0)
  with pytest.raises(UserError, match="non-negative integer"):
    search.sample_configs(SPACE, 3, seed=-1)
  assert search.randint(2, 2).sample(np.random.default_rng(0), 3) == [2, 2, 2]
  assert list(search.sample_configs(SPACE, 1001, seed=0))[-1] == "r1000"
