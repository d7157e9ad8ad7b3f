"""How often a class-conditional generator draws the class it is asked for, judged by a classifier.

  python experiments/evaluation/class_agreement.py --workdir=runs/cdcgan_mnist_cpu

Trains the project's small classifier on 20,000 of the run's training images (400 steps; its
accuracy on 2,000 validation images is printed), draws 100 samples of each class from the run's
sampling generator (the EMA generator when it is on), and prints the fraction whose predicted class
is the requested one (chance: 1 / number of classes) and, per requested class, the predicted counts.
docs/COMPONENTS.md quotes its output for `cdcgan_mnist.py:cpu`.
"""

import sys

from absl import flags

from gan_jax import cli
from gan_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained class-conditional run's folder.")
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Samples drawn for each class.")
_SEED = flags.DEFINE_integer("seed", 5, "Seed of the samples' noise.")


def main(argv):
  del argv
  if _PER_CLASS.value < 1:
    raise UserError(f"--per_class must be at least 1, got {_PER_CLASS.value}")
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  import gan_jax  # pylint: disable=g-import-not-at-top
  from gan_jax.data import scale, sources  # pylint: disable=g-import-not-at-top
  from gan_jax.evaluation import classifier  # pylint: disable=g-import-not-at-top
  run = gan_jax.load_run(_WORKDIR.value)
  gan = run.reader.gan
  classes = gan.num_classes
  if not classes:
    raise UserError(f"{_WORKDIR.value} is not class-conditional (model.num_classes = 0)")
  train = sources.load_images(run.config.data, "train")
  val = sources.load_images(run.config.data, "validation")
  clf = classifier.train_classifier(train.images[:20000], train.labels[:20000], classes, steps=400,
                                    test_images=val.images[:2000], test_labels=val.labels[:2000])
  print(f"classifier accuracy on 2,000 validation images: {clf.test_accuracy:.3f}")
  g_params, stats = gan.sampling_variables(run.state)
  n = classes * _PER_CLASS.value
  labels = jnp.repeat(jnp.arange(classes, dtype=jnp.int32), _PER_CLASS.value)
  x = np.asarray(gan.generate(g_params, gan.noise_batch(jax.random.PRNGKey(_SEED.value), n), labels, stats))
  pred = classifier.logits(clf, scale.to_unit(x, run.reader.data.image_shape, run.reader.data.display_scale)).argmax(1)
  want = np.asarray(labels)
  print(f"step {run.step}: {np.mean(pred == want):.3f} of {n} samples are of the requested class "
        f"(chance {1 / classes:.3f})")
  for c in range(classes):
    print(f"asked {c}: predicted counts {np.bincount(pred[want == c], minlength=classes).tolist()}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  sys.exit(cli.run(main))
