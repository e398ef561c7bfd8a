"""Two CPU devices for every test, so data-parallel code runs for real."""

import chex
import pytest

import testing_utils

chex.set_n_cpu_devices(2)


@pytest.fixture(scope='session')
def blob_dir(tmp_path_factory):
  """A tiny learnable IDX data set (see testing_utils.write_blob_digits)."""
  return testing_utils.write_blob_digits(tmp_path_factory.mktemp('blobs'))
