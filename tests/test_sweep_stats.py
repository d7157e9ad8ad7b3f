"""Tests for gan_jax.sweep.stats (its estimators and its report) on synthetic sweep results whose
answers are known: a planted effect is found and none is invented, pairing over seeds pays off, Holm
and d_z match hand computations, bootstrap CIs cover the truth, and budget curves have their
defining properties."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from gan_jax.errors import UserError
from gan_jax.sweep import stats, stats_report


def _results(cells: dict, metric: str = "score") -> list:
  """result.json-shaped records from {((axis, label), ...): {seed: value}}."""
  return [{"cell": [list(p) for p in cell], "seed": s, "metrics": {metric: v}}
          for cell, by_seed in cells.items() for s, v in by_seed.items()]


def _planted(effect: float, seeds=range(10), noise: float = 0.1, rng_seed: int = 0):
  """Cell A: a large per-seed component plus noise; cell B: A's seed component + `effect` + noise."""
  rng = np.random.default_rng(rng_seed)
  shared = {s: 50 + 10 * rng.standard_normal() for s in seeds}
  a = {s: shared[s] + noise * rng.standard_normal() for s in seeds}
  b = {s: shared[s] + effect + noise * rng.standard_normal() for s in seeds}
  return a, b


# ---------------------------------------------------------------------------- the data model
def test_as_results_reads_result_json_records_and_rejects_mixed_sweeps():
  rec = {"cell": [["loss", "hinge"], ["lr", "0.001"]], "seed": 3, "metrics": {"fid": 12.5},
         "cell_name": "loss=hinge, lr=0.001", "config": {}}
  (r,) = stats.as_results([json.loads(json.dumps(rec))])
  assert r.labels == {"loss": "hinge", "lr": "0.001"} and r.seed == 3 and r.value("fid") == 12.5
  assert r.cell_name == rec["cell_name"] and math.isnan(r.value("missing"))
  same = stats.as_results([{"cell": {"loss": "hinge", "lr": "0.001"}, "seed": 3, "metrics": {}}])
  assert same[0].cell == r.cell
  with pytest.raises(UserError, match="mix cells"):
    stats.as_results([rec, {"cell": [["loss", "ns"]], "seed": 0, "metrics": {}}])
  with pytest.raises(UserError, match="two results for seed 3"):
    stats.as_results([rec, rec])
  with pytest.raises(UserError, match="not a sweep result"):
    stats.as_results([{"seed": 1}])


# ---------------------------------------------------------------------------- one cell
def test_cell_ci_small_n_and_non_finite_values():
  c = stats.cell_ci([1.0, 2.0])
  assert c.mean == 1.5 and c.n == 2 and math.isnan(c.low) and math.isnan(c.high)
  assert c.method == "none" and "< 3" in c.note
  c = stats.cell_ci([1.0, float("nan"), None, 3.0, 2.0, float("inf")])
  assert (c.n, c.n_dropped, c.mean) == (3, 3, 2.0) and c.low < 2.0 < c.high
  c = stats.cell_ci([4.0, 4.0, 4.0])
  assert (c.low, c.high, c.method) == (4.0, 4.0, "exact")
  assert stats.cell_ci([1.0, 5.0, 2.0, 8.0], seed=3) == stats.cell_ci([1.0, 5.0, 2.0, 8.0], seed=3)


def test_bootstrap_ci_covers_the_true_mean():
  rng = np.random.default_rng(1)
  hits = 0
  for _ in range(200):
    x = 3.0 + 2.0 * rng.standard_normal(50)
    c = stats.cell_ci(x, 0.95, n_resamples=1000, seed=int(rng.integers(1 << 30)))
    hits += c.low <= 3.0 <= c.high
  # Nominal 95%; BCa runs narrow for small n (about 93% at n=50, 89% at n=10), hence n=50 here.
  assert hits >= 180, hits


# ---------------------------------------------------------------------------- paired comparisons
def test_cohens_dz_and_hedges_by_hand():
  a = {s: 10.0 for s in range(5)}
  b = {s: 10.0 + d for s, d in enumerate([1.0, 2.0, 3.0, 4.0, 5.0])}
  p = stats.paired_comparison(a, b, n_resamples=1000)
  sd = math.sqrt(2.5)  # differences 1..5: mean 3, sample variance 10 / 4
  assert p.n == 5 and p.seeds == (0, 1, 2, 3, 4) and p.mean_diff == pytest.approx(3.0)
  assert p.sd_diff == pytest.approx(sd) and p.d_z == pytest.approx(3 / sd)
  assert p.g_z == pytest.approx(3 / sd * (1 - 3 / (4 * 4 - 1)))  # J = 1 - 3 / (4 df - 1), df = 4
  assert p.p == p.p_t == pytest.approx(sps.ttest_1samp([1, 2, 3, 4, 5], 0).pvalue)
  assert p.p_wilcoxon == pytest.approx(0.0625) and p.min_p_wilcoxon == pytest.approx(0.0625)
  assert "Wilcoxon cannot reach p<0.05" in p.note  # 5 seeds: 2 / 2**5 > 0.05


def test_paired_uses_only_common_finite_seeds():
  a = {0: 1.0, 1: 2.0, 2: 3.0, 3: float("nan"), 4: 5.0}
  b = {1: 2.5, 2: 3.5, 3: 4.0, 4: 5.5, 9: 0.0}
  p = stats.paired_comparison(a, b)
  assert p.seeds == (1, 2, 4) and p.mean_diff == pytest.approx(0.5)
  p = stats.paired_comparison({0: 1.0}, {0: 2.0})
  assert p.n == 1 and math.isnan(p.p) and "no test possible" in p.note


def test_the_same_difference_on_every_seed_is_not_a_detected_effect():
  """Counts (modes covered) often differ by the same amount on every seed: with no spread the t-test
  is undefined, and two seeds are no evidence, so no verdict is made."""
  a, b = {0: 7.0, 1: 6.0}, {0: 8.0, 1: 7.0}
  p = stats.paired_comparison(a, b)
  assert p.mean_diff == 1.0 and p.sd_diff == 0.0 and math.isnan(p.p_t) and math.isnan(p.p)
  assert "the same difference on every seed" in p.note
  assert stats.paired_comparison({0: 7.0, 1: 6.0}, {0: 7.0, 1: 6.0}).p == 1.0  # no difference at all
  e = stats.axis_effects(_results({(("loss", "A"),): a, (("loss", "B"),): b}), "loss", "score",
                         higher_is_better=True)
  assert "beats" not in e.sentence and "No difference detectable" in e.sentence
  assert "not tested: the same difference on every seed" in e.sentence


def test_planted_effect_is_found_and_no_effect_is_not():
  a, b = _planted(5.0)
  p = stats.paired_comparison(a, b, n_resamples=2000)
  assert p.mean_diff == pytest.approx(5.0, abs=0.2) and p.low > 0 and p.low < 5.0 < p.high
  assert p.p_t < 1e-6 and p.p_wilcoxon < 0.01  # 10 seeds: the exact Wilcoxon can reach 2 / 2**10
  a0, b0 = _planted(0.0)
  p0 = stats.paired_comparison(a0, b0, n_resamples=2000)
  assert p0.low < 0 < p0.high and p0.p > 0.05

  cells = {(("loss", "A"),): a, (("loss", "B"),): b}
  e = stats.axis_effects(_results(cells), "loss", "score", higher_is_better=True, n_resamples=2000)
  (c,) = e.pooled
  assert (c.a, c.b, c.stats.n, c.n_contexts) == ("A", "B", 10, 1) and c.p_holm < 0.05
  assert e.sentence.startswith("loss, score (higher is better): B beats A by 5")
  assert "paired over 10 seeds" in e.sentence
  # Lower is better: the same numbers make A the better one.
  e = stats.axis_effects(_results(cells), "loss", "score", higher_is_better=False, n_resamples=2000)
  assert "A beats B by 5" in e.sentence and "[4." in e.sentence

  e0 = stats.axis_effects(_results({(("loss", "A"),): a0, (("loss", "B"),): b0}), "loss", "score", True,
                          n_resamples=2000)
  assert "No difference detectable between A and B" in e0.sentence
  assert "with 10 seeds, differences below ~" in e0.sentence and e0.pooled[0].p_holm > 0.05


def test_pairing_beats_independent_cis_when_seeds_share_a_large_component():
  a, b = _planted(2.0, noise=0.5)
  paired = stats.paired_comparison(a, b, n_resamples=2000)
  ca = stats.cell_ci(list(a.values()), n_resamples=2000)
  cb = stats.cell_ci(list(b.values()), n_resamples=2000)
  unpaired_width = (cb.high - ca.low) - (cb.low - ca.high)  # CI of b - a from the two separate CIs
  assert cb.low - ca.high < 0 < cb.high - ca.low  # unpaired: the effect is invisible
  assert paired.low > 0 and (paired.high - paired.low) < 0.1 * unpaired_width
  assert sps.ttest_ind(list(b.values()), list(a.values())).pvalue > 0.3 and paired.p_t < 1e-4


# ---------------------------------------------------------------------------- Holm
def test_holm_by_hand():
  # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone).
  np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
  np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
  out = stats.holm([0.02, float("nan"), 0.01])  # NaN left out of m
  np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
  assert math.isnan(out[1])
  assert stats.holm([]).size == 0
  with pytest.raises(UserError, match=r"\[0, 1\]"):
    stats.holm([1.5])


# ---------------------------------------------------------------------------- axes and a whole sweep
def _grid(effect_loss: float, effect_lr: float, seeds=range(6), rng_seed: int = 0) -> list:
  """loss in {ns, hinge, wgan} x lr in {1e-4, 1e-3}: hinge better by `effect_loss`, wgan = ns."""
  rng = np.random.default_rng(rng_seed)
  shared = {s: 10 * rng.standard_normal() for s in seeds}
  records = []
  for loss, off in (("ns", 0.0), ("hinge", effect_loss), ("wgan", 0.0)):
    for lr, off_lr in (("1e-4", 0.0), ("1e-3", effect_lr)):
      for s in seeds:
        records.append({"cell": [["loss", loss], ["lr", lr]], "seed": s,
                        "metrics": {"acc": 50 + shared[s] + off + off_lr + 0.3 * rng.standard_normal()}})
  return records


def test_axis_effects_within_contexts_and_pooled():
  e = stats.axis_effects(_grid(3.0, 0.0), "loss", "acc", True, n_resamples=1000)
  assert e.values == ("ns", "hinge", "wgan") and len(e.pooled) == 3 and len(e.by_context) == 6
  by_pair = {(c.a, c.b): c for c in e.pooled}
  assert by_pair["ns", "hinge"].stats.n == 6 and by_pair["ns", "hinge"].n_contexts == 2
  assert by_pair["ns", "hinge"].stats.mean_diff == pytest.approx(3.0, abs=0.3)
  assert by_pair["ns", "hinge"].p_holm < 0.05 and by_pair["hinge", "wgan"].p_holm < 0.05
  assert by_pair["ns", "wgan"].p_holm > 0.05
  assert {c.context for c in e.by_context} == {(("lr", "1e-4"),), (("lr", "1e-3"),)}
  assert "hinge beats ns by 3" in e.sentence and "hinge beats wgan by 3" in e.sentence
  assert "No difference detectable between ns and wgan" in e.sentence
  with pytest.raises(UserError, match="not an axis"):
    stats.axis_effects(_grid(3.0, 0.0), "model", "acc", True)
  with pytest.raises(UserError, match="in none of the results"):
    stats.axis_effects(_grid(3.0, 0.0), "loss", "fid", True)


def test_analyse_sweep_holm_over_the_whole_report_and_writes_files(tmp_path):
  records = _grid(3.0, -1.0)
  records[0]["metrics"]["acc"] = float("nan")  # a diverged run: left out, counted
  report = stats.analyse_sweep(records, {"acc": True}, budget_by="loss", n_resamples=500)
  assert report.n_comparisons == 4  # 3 loss pairs + 1 lr pair
  raw = [c.stats.p for e in report.effects for c in e.pooled]
  np.testing.assert_allclose([c.p_holm for e in report.effects for c in e.pooled], stats.holm(raw))
  lr = next(e for e in report.effects if e.axis == "lr")
  assert "1e-4 beats 1e-3 by 1" in lr.sentence and "over 4 comparisons" in lr.sentence
  cell = report.cells["acc"]["loss=ns, lr=1e-4"]
  assert (cell.n, cell.n_dropped) == (5, 1)
  assert set(report.budgets["acc"]) == {"ns", "hinge", "wgan"} and report.budgets["acc"]["ns"].n == 11
  paths = stats_report.write_report(str(tmp_path), report)
  assert [p.rsplit("/", 1)[-1] for p in paths] == ["stats.md", "stats_budget_acc.png"]
  md = (tmp_path / "stats.md").read_text()
  assert "## acc (higher is better)" in md and "| ns | hinge | pooled (2 settings) | 6 |" in md
  assert lr.sentence in md and "![budget curves of acc](stats_budget_acc.png)" in md
  assert (tmp_path / "stats_budget_acc.png").read_bytes()[:4] == b"\x89PNG"


def test_few_seeds_say_what_they_cannot_show():
  a, b = _planted(5.0, seeds=range(4))
  e = stats.axis_effects(_results({(("x", "a"),): a, (("x", "b"),): b}), "x", "score", True, n_resamples=500)
  assert "with 4 seeds the Wilcoxon signed-rank test cannot reach p<0.05" in e.sentence
  a, b = _planted(5.0, seeds=range(1))
  e = stats.axis_effects(_results({(("x", "a"),): a, (("x", "b"),): b}), "x", "score", True)
  assert "no comparison possible" in e.sentence


# ---------------------------------------------------------------------------- budget curves
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_budget_curve_exact_properties(higher_is_better):
  values = np.random.default_rng(2).normal(size=12)
  c = stats.budget_curve(values, higher_is_better)
  best = values.max() if higher_is_better else values.min()
  assert c.n == 12 and list(c.k) == list(range(1, 13))
  assert c.mean[0] == pytest.approx(values.mean()) and c.mean[-1] == pytest.approx(best)
  steps = np.diff(c.mean) if higher_is_better else -np.diff(c.mean)
  assert np.all(steps >= -1e-12)  # more budget never hurts the expected best
  assert np.all(c.low <= c.mean + 1e-12) and np.all(c.mean <= c.high + 1e-12)
  assert c.low[-1] == c.high[-1] == pytest.approx(best)  # one subset of size N
  np.testing.assert_allclose([c.low[0], c.high[0]], np.sort(values)[[0, 11]])  # 5%, 95% of 12 values


def test_budget_curve_by_hand_and_monte_carlo_agrees():
  # Best of 2 of {1, 2, 3, 4}: 6 pairs, maxima 2, 3, 3, 4, 4, 4 -> mean 20 / 6.
  c = stats.budget_curve([3.0, 1.0, 4.0, 2.0], True)
  np.testing.assert_allclose(c.mean, [2.5, 20 / 6, 3.75, 4.0])
  mc = stats.budget_curve([3.0, 1.0, 4.0, 2.0, float("nan")], True, n_boot=20000, seed=1)
  assert mc.n == 4
  np.testing.assert_allclose(mc.mean, c.mean, atol=0.03)
  np.testing.assert_allclose([mc.low, mc.high], [c.low, c.high])
  assert stats.budget_curve([], True).n == 0
  with pytest.raises(UserError, match="band"):
    stats.budget_curve([1.0, 2.0], True, band=(95, 5))


def test_trials_of_a_random_search_as_the_unit_of_replication():
  """loss {A, B} x 10 drawn trials x 1 seed, B better by 3 at every trial's hyperparameters: with one
  seed nothing can be compared over seeds, but the trials (independent draws both losses ran) can."""
  rng = np.random.default_rng(3)
  trial_effect = {f"r{t:03d}": 20 * rng.standard_normal() for t in range(10)}
  records = [{"cell": [["loss", loss], ["trial", t]], "seed": 0,
              "metrics": {"fd": 50 + te + (0.0 if loss == "A" else -3.0) + 0.3 * rng.standard_normal()}}
             for loss in ("A", "B") for t, te in trial_effect.items()]
  by_seed = stats.analyse_sweep(records, {"fd": False}, axes=["loss"], n_resamples=500)
  assert "no comparison possible" in by_seed.effects[0].sentence
  report = stats.analyse_sweep(records, {"fd": False}, axes=["loss"], budget_by=["loss"], unit="trial",
                               n_resamples=500)
  (e,) = report.effects
  (c,) = e.pooled
  assert c.stats.n == 10 and c.stats.seeds == tuple(sorted(trial_effect)) and not e.by_context
  assert c.stats.mean_diff == pytest.approx(-3.0, abs=0.3) and c.p_holm < 0.001
  assert e.sentence.startswith("loss, fd (lower is better): B beats A by 2.8") and "paired over 10 trials" in e.sentence
  assert {arm: curve.n for arm, curve in report.budgets["fd"].items()} == {"loss=A": 10, "loss=B": 10}
  md = stats_report.render_markdown(report)
  assert "paired over the values of trial" in md and "(arms: loss)" in md
  with pytest.raises(UserError, match="cannot be compared along and be the unit"):
    stats.axis_effects(records, "trial", "fd", False, unit="trial")
