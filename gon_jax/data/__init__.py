"""Data: whole data sets held on the host as uint8 (in memory, or memory-mapped from the decoded
cache), deterministic, resumable training batches converted to float32 one batch at a time
(`to_float`), and fixed-size batches of any array through a function (`in_batches`).

Five sources. Three read a data set's files as their publishers ship them, without TensorFlow,
downloading the sets gon_jax knows into a cache folder the first time (gon_jax.download): 'idx'
reads the four IDX files of MNIST-like sets (MNIST and Fashion-MNIST download), 'cifar' the
python version of CIFAR-10 (its archive or the extracted folder), 'celeba' CelebA's aligned
JPEGs (their zip or its extracted folder) and its split file. 'folder' reads a folder of one's
own images (docs/data_own_images.md). 'tfds' reads a prepared TFDS data set through
`tfds.data_source` (array_record, no TensorFlow).
Images come back as uint8 [num_examples, height, width, channels], already resized; the
decoded splits of 'cifar', 'celeba' and 'folder' are kept in an on-disk cache
(`decoded_cache_dir`) that later runs memory-map instead of decoding again.

The modules, one job each (a module imports only those above it in this list):
  file_format    what a file source is: the split asked for (_Request), how a source finds and
                 reads it (_FileFormat); SPLITS.
  decoding       decoding images into one uint8 array: centred square crops, PIL's resizing.
  idx, cifar, celeba, image_folder
                 the file sources, one a module: finding a split's files, parsing them, and the
                 source's _FileFormat (FORMAT).
  tfds_source    the 'tfds' source (DATASETS).
  decoded_cache  the on-disk cache of decoded splits (decoded_cache_dir).
  sources        load_split, the one entry: picks the source, finds or downloads the files,
                 keeps loaded splits for the process; load_data, both splits of a data set
                 with their labels checked (check_labels).
  batches        the batch pipeline: to_float, the training order (batch_indices),
                 train_batches, call_indices, prefetch, in_batches.
Downloads are gon_jax.download's.
"""

from gon_jax.data.batches import (batch_indices, call_indices, in_batches, prefetch,
                                  process_slice, steps_per_epoch, to_float, train_batches)
from gon_jax.data.decoded_cache import decoded_cache_dir
from gon_jax.data.file_format import SPLITS
from gon_jax.data.image_folder import IMAGE_EXTENSIONS, TEST_ONE_IN
from gon_jax.data.sources import SOURCES, check_labels, load_data, load_split
from gon_jax.data.tfds_source import DATASETS
from gon_jax.errors import DataError  # Raised for bad data: `except data.DataError`.

__all__ = ['DATASETS', 'DataError', 'IMAGE_EXTENSIONS', 'SOURCES', 'SPLITS', 'TEST_ONE_IN',
           'batch_indices', 'call_indices', 'check_labels', 'decoded_cache_dir', 'in_batches',
           'load_data', 'load_split', 'prefetch', 'process_slice', 'steps_per_epoch', 'to_float',
           'train_batches']
