"""The input pipeline: one `Data` object per run, selected by `config.data.source`.

Sources:
  toy     densities sampled on device (`gan_jax.data.toy`);
  digits  scikit-learn's built-in 8x8 handwritten digits (real data, offline);
  idx     a folder of MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST);
  cifar10 CIFAR-10's python archive or extracted folder, with the reference code's splits;
  folder  a folder of PNG/JPEG images, labelled by class sub-folders if it has them;
  tfds    any TFDS image dataset, read without TensorFlow (`tfds.data_source`).

Pipelines (`data.pipeline`): 'device' keeps the training split on the device and gathers batches
there, inside the jit-compiled update (MNIST is 39 MB as uint8): `lax.scan` over many steps never waits
on the host. 'stream' reads each dispatch's batches on the host with Grain (`gan_jax.data.stream`) and
hands them to the update as one block, for splits that do not fit on the device. 'auto' (the default)
streams a split larger than `data.device_limit_mb`; the run logs which it chose and why.

Order and reproducibility on the device path: every epoch is a permutation of the whole split drawn from
`fold_in(data_key, epoch)`. The permutation, the epoch and the position inside it are a `DataState`,
part of the training state, so a checkpoint saves the exact place in the data and a resumed run sees the
batches an uninterrupted one would. The global batch is `perm[position*B : (position+1)*B]`; a device
(or process) takes its contiguous slice of those indices, so each epoch covers every example exactly
once however the batch is split, and the numbers do not depend on the device count.
"""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import lax

from gan_jax.data import scale as scale_lib, sources, stream
from gan_jax.data.toy import ToyDistribution, build_toy
from gan_jax.errors import UserError

MEAN_RECORDS = 10000  # a streamed run's mean example (G's initial output bias) averages this many records


@flax.struct.dataclass
class DataState:
  """Where a run is in its data: the current epoch's order and the batches already taken from it."""

  perm: jax.Array  # int32 [N]: the order of this epoch ([1] placeholder for toy data)
  epoch: jax.Array  # int32 scalar
  position: jax.Array  # int32 scalar: global batches taken in this epoch


@dataclasses.dataclass(frozen=True)
class Sampler:
  """Draws training batches on device. Static: safe to close over in jit-compiled code."""

  example_shape: tuple
  num_examples: int = 0
  scale: str | None = None  # convert stored uint8 with this scale; None: stored as float32
  toy: ToyDistribution | None = None
  # > 0: streamed data (`data.pipeline='stream'`) with this many batches an epoch. The host puts each
  # dispatch's batches in `arrays["stream"]` (uint8 [draws, b, ...]; labels in
  # `arrays["stream_labels"]`), the first of them global batch `arrays["stream_start"]`.
  stream_steps: int = 0

  def init_state(self, data_key) -> DataState:
    n = self.num_examples
    # Toy and streamed data have no order on the device; a one-element placeholder keeps the state
    # checkpointable.
    perm = (jax.random.permutation(jax.random.fold_in(data_key, 0), n) if n and not self.stream_steps
            else jnp.zeros([1]))
    return DataState(perm=perm.astype(jnp.int32), epoch=jnp.int32(0), position=jnp.int32(0))

  def steps_per_epoch(self, batch_size: int) -> int:
    return max(self.num_examples // batch_size, 1)

  def next(self, arrays, state: DataState, data_key, example_keys, offset, global_batch):
    """The local part of the next global batch.

    Args:
      arrays: the device-resident data (`{'train': [N, ...]}`; empty for toy data).
      state: the current `DataState`.
      data_key: the key that seeds each epoch's permutation.
      example_keys: one key per local example (used by toy data).
      offset: index of this device's first example within the global batch.
      global_batch: the global batch size B.

    Returns:
      (x, state): local examples [b, *example_shape] in float32, and the advanced state.
    """
    if self.toy is not None:
      return jax.vmap(self.toy.sample)(example_keys), state
    if self.stream_steps:
      x, _, state = self._streamed(arrays, state)
      return x, state
    idx, state = self._indices(state, data_key, offset, global_batch, example_keys.shape[0])
    x = jnp.take(arrays["train"], idx, axis=0)
    return self.to_float(x), state

  def next_labeled(self, arrays, state: DataState, data_key, example_keys, offset, global_batch):
    """`next` for class-conditional runs: (x, labels int32 [b], state), the labels gathered with the
    same indices as the examples from `arrays["labels"]` (`with_labels`)."""
    if self.toy is not None or not ({"labels", "stream_labels"} & set(arrays)):
      raise UserError("model.num_classes > 0 needs labelled image data (idx, cifar10, folder with "
                      "class sub-folders, tfds); this data has no labels")
    if self.stream_steps:
      return self._streamed(arrays, state)
    idx, state = self._indices(state, data_key, offset, global_batch, example_keys.shape[0])
    x = jnp.take(arrays["train"], idx, axis=0)
    return self.to_float(x), jnp.take(arrays["labels"], idx, axis=0), state

  def _indices(self, state: DataState, data_key, offset, global_batch, b):
    """(indices [b] of this device's examples of the next global batch, the advanced state)."""
    n = self.num_examples

    def new_epoch(s):
      epoch = s.epoch + 1
      perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n).astype(jnp.int32)
      return DataState(perm=perm, epoch=epoch, position=jnp.int32(0))

    state = lax.cond((state.position + 1) * global_batch > n, new_epoch, lambda s: s, state)
    idx = lax.dynamic_slice_in_dim(state.perm, state.position * global_batch + offset, b)
    return idx, state.replace(position=state.position + 1)

  def _streamed(self, arrays, state: DataState):
    """(x, labels or None, advanced state): the next batch of the block the host put in `arrays`.

    Under `pmap` the block holds this device's examples, elsewhere the global batch (laid out by the
    trainer). Global batch t = epoch * stream_steps + position is row t - stream_start of the block.
    """
    s = self.stream_steps
    state = lax.cond(state.position >= s,
                     lambda st: st.replace(epoch=st.epoch + 1, position=jnp.int32(0)), lambda st: st, state)
    row = state.epoch * s + state.position - arrays["stream_start"]
    x = lax.dynamic_index_in_dim(arrays["stream"], row, keepdims=False)
    x = x.reshape((x.shape[0],) + tuple(self.example_shape))
    y = (lax.dynamic_index_in_dim(arrays["stream_labels"], row, keepdims=False)
         if "stream_labels" in arrays else None)
    return self.to_float(x), y, state.replace(position=state.position + 1)

  def to_float(self, x):
    return scale_lib.from_uint8(x, self.scale)


@dataclasses.dataclass
class Data:
  """A run's data: the device sampler, the host arrays it reads, and facts models need."""

  sampler: Sampler
  arrays: dict  # host numpy arrays, put on device by the trainer
  mean_example: np.ndarray | None  # mean training example in model scale (for G's output bias)
  name: str
  image_shape: tuple | None = None  # (H, W, C) of image data, whatever the layout; None for toy data
  display_scale: str | None = None  # how to map examples to [0, 1] for pictures
  # int32 [N] labels of `arrays["train"]`, row for row, on the host; None where the source has no
  # labels. Class-conditional runs (`model.num_classes > 0`) also get them on device as
  # `arrays["labels"]` (`with_labels`); unconditional runs do not, and compile as without labels.
  labels: np.ndarray | None = None
  class_names: tuple | None = None  # the name of each label value, where the source has them
  pipeline: str = "device"  # 'device' | 'stream' (data.pipeline, 'auto' resolved)
  # Streamed data: the training records (`gan_jax.data.stream`), read by the trainer's Grain iterator;
  # `arrays` is then empty and `labels` holds the records' labels where the source knows them.
  records: object = None

  @property
  def example_shape(self):
    return self.sampler.example_shape


def with_labels(data: Data, config) -> Data:
  """`data` whose device arrays hold the labels exactly when `config.model.num_classes > 0`.

  Checks that the labels exist and lie in [0, num_classes). A data set loaded once and shared by
  conditional and unconditional runs (a sweep) goes through this for each of them.
  """
  num_classes = int(config.model.get("num_classes", 0))
  arrays = {k: v for k, v in data.arrays.items() if k != "labels"}
  if num_classes > 0 and data.pipeline == "stream":
    if data.labels is None and not getattr(data.records, "has_labels", False):
      raise UserError(f"model.num_classes={num_classes} needs labelled data, but {data.name} has no "
                      "labels; set model.num_classes=0 or use a labelled source")
    if data.labels is not None and len(data.labels) and int(np.max(data.labels)) >= num_classes:
      raise UserError(f"model.num_classes={num_classes}, but {data.name}'s labels go up to "
                      f"{int(np.max(data.labels))}; set model.num_classes={int(np.max(data.labels)) + 1}")
    return data
  if num_classes > 0:
    if data.labels is None:
      raise UserError(f"model.num_classes={num_classes} needs labelled data, but {data.name} has no "
                      "labels; set model.num_classes=0 or use a labelled source (idx, cifar10, tfds, "
                      "folder with class sub-folders)")
    top = int(np.max(data.labels)) if len(data.labels) else -1
    if top >= num_classes or (len(data.labels) and int(np.min(data.labels)) < 0):
      raise UserError(f"model.num_classes={num_classes}, but {data.name}'s labels go up to {top}; "
                      f"set model.num_classes={top + 1}")
    arrays["labels"] = np.asarray(data.labels, np.int32)
  if arrays.keys() == data.arrays.keys():
    return data
  return dataclasses.replace(data, arrays=arrays)


def prepare_images(images_uint8: np.ndarray, data_config):
  """uint8 [N, H, W, C] -> (stored array, scale for on-device conversion, example shape)."""
  layout = data_config.layout
  if layout not in ("flat", "nhwc"):
    raise UserError(f"unknown data.layout {layout!r}; choose 'flat' or 'nhwc'")
  scale = data_config.scale
  if scale not in ("unit", "symmetric"):
    raise UserError(f"unknown data.scale {scale!r}; choose 'unit' ([0, 1]) or 'symmetric' ([-1, 1])")
  x = images_uint8
  stored_scale = scale
  if data_config.get("gcn", False):
    x = sources.global_contrast_normalize(
        sources.to_float(x, scale).reshape(len(x), -1), scale=data_config.get("gcn_scale", 55.0))
    x = x.reshape(images_uint8.shape).astype(np.float32)
    stored_scale = None
  x = sources.apply_layout(x, layout)
  return x, stored_scale, tuple(x.shape[1:])


def load_split(data_config, split: str) -> np.ndarray:
  """A split's examples as float32 in model scale and layout (for evaluation, on the host)."""
  loaded = sources.load_images(data_config, split)
  x, scale, _ = prepare_images(loaded.images, data_config)
  return x if scale is None else scale_lib.from_uint8(x, scale)


def build_data(config) -> Data:
  """Loads (or, streamed, opens) the training split named by `config.data`; the `Data` of a run."""
  dc = config.data
  if dc.source not in sources.SOURCES:
    raise UserError(f"unknown data.source {dc.source!r}; choose one of {list(sources.SOURCES)}")
  choice = dc.get("pipeline", "auto")
  if choice not in stream.PIPELINES:
    raise UserError(f"unknown data.pipeline {choice!r}; choose one of {list(stream.PIPELINES)}")
  if dc.source == "toy":
    if choice == "stream":
      raise UserError("data.pipeline='stream' reads image data from the host; toy data is sampled on the "
                      "device: set data.pipeline='auto' or 'device'")
    toy = build_toy(dc)
    return with_labels(Data(Sampler(example_shape=(toy.dim,), toy=toy), {}, None, toy.name), config)
  loaded = None
  if choice != "device":
    opened = sources.open_records(dc)
    records = opened.records
    size_mb = len(records) * int(np.prod(records.example_shape)) / 2**20
    limit = float(dc.get("device_limit_mb", 2048))
    if choice == "stream" or size_mb > limit:
      why = "data.pipeline='stream'" if choice == "stream" else f"{size_mb:.0f} MB > data.device_limit_mb={limit:g}"
      logging.info("data pipeline: stream (%s, %d records of %s; %s)", opened.name, len(records),
                   "x".join(map(str, records.example_shape)), why)
      return with_labels(_streamed_data(config, opened), config)
    logging.info("data pipeline: device (%s, %.0f MB <= data.device_limit_mb=%g)", opened.name, size_mb, limit)
    loaded = opened.loaded  # already in memory for idx, cifar10 and digits: not read twice
  if loaded is None:
    loaded = sources.load_images(dc, "train")
  sources.check_batch_size(len(loaded.images), config.batch_size, "train")
  x, scale, shape = prepare_images(loaded.images, dc)
  mean = _model_scale(x.reshape(len(x), -1).mean(axis=0, dtype=np.float64), scale)
  sampler = Sampler(example_shape=shape, num_examples=len(x), scale=scale)
  return with_labels(Data(sampler, {"train": x}, mean.reshape(shape), loaded.name,
                          image_shape=tuple(loaded.images.shape[1:]), display_scale=scale,
                          labels=loaded.labels, class_names=loaded.class_names), config)


def _model_scale(mean_uint8, scale):
  """A mean in uint8 units, in the model's scale (unchanged for data stored as float)."""
  if scale == "unit":
    return mean_uint8 / 255.0
  if scale == "symmetric":
    return mean_uint8 / 127.5 - 1.0
  return mean_uint8


def _streamed_data(config, opened) -> Data:
  """The `Data` of a streamed run over `opened.records` (nothing is loaded but the mean example)."""
  dc, records = config.data, opened.records
  if dc.get("gcn", False):
    raise UserError("data.gcn normalises with statistics of the whole split, which a streamed run does "
                    "not hold; set data.pipeline='device' (or data.gcn=False)")
  _, _, shape = prepare_images(np.zeros((1,) + records.example_shape, np.uint8), dc)  # checks layout, scale
  stream.check_shards(len(records), config.batch_size, jax.process_count())
  stream.default_workers(dc.get("workers", 0))
  # G's output bias starts at the mean example: of up to MEAN_RECORDS records spread over the split,
  # each process reading its share.
  total, count = records.mean_sum(MEAN_RECORDS, jax.process_index(), jax.process_count())
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    # Gathered as their bytes (uint32 pairs): JAX would round float64 to float32.
    parts = np.asarray(multihost_utils.process_allgather(total.view(np.uint32)))
    total = np.ascontiguousarray(parts).view(np.float64).sum(axis=0)
  mean = _model_scale((total / count).reshape(-1), dc.scale).reshape(shape)
  n = len(records)
  sampler = Sampler(example_shape=shape, num_examples=n, scale=dc.scale,
                    stream_steps=n // config.batch_size)
  return Data(sampler, {}, mean, opened.name, image_shape=records.example_shape, display_scale=dc.scale,
              labels=opened.labels, class_names=opened.class_names, pipeline="stream", records=records)
