"""benchmarks/step_profile.py: operations sorted into passes of the GON step and kinds."""

import sys

from testing_utils import REPO

sys.path.insert(0, str(REPO / 'benchmarks'))

import step_profile  # pylint: disable=wrong-import-position


def test_transformations_name_the_pass_of_the_gon_step():
  cases = {
      'jit(train_step)/jvp(jvp(ConvDecoder))/UpConv_1/dot_general': 'inner forward',
      'jit(train_step)/jvp(transpose(jvp(ConvDecoder)))/UpConv_1/dot_general': 'inner backward',
      'jit(train_step)/jvp(ConvDecoder)/GroupNorm_0/add': 'outer forward',
      'jit(train_step)/transpose(jvp(ConvDecoder))/UpConv_1/pad': 'outer backward',
      'jit(train_step)/transpose(jvp(transpose(jvp(ConvDecoder))))/UpConv_2/dot_general':
          'second order',
      'jit(train_step)/transpose(jvp(jvp(SirenDecoder)))/Dense_0/dot_general': 'second order',
      'jit(train_step)/while/body/jvp(SirenDecoder)/sincos/mul': 'outer forward',
      # the shared origin: the examples' backward passes, vmapped, differentiated again
      'jit(train_step)/transpose(jvp(vmap(transpose(jvp(jvp(SirenDecoder))))))/Dense_1/mul':
          'second order',
      'jit(train_step)/jvp(vmap(transpose(jvp(jvp(ConvDecoder)))))/UpConv_1/pad': 'inner backward',
      'jit(train_step)/add': 'optimiser and other',
  }
  for op_name, expected in cases.items():
    assert step_profile.classify(op_name, 'fusion')[0] == expected, op_name


def test_kinds_of_operation():
  assert step_profile.classify('jit(f)/jvp(ConvDecoder)/UpConv_1/x', 'dot')[1] == 'matmul'
  assert step_profile.classify('jit(f)/jvp(ConvDecoder)/UpConv_1/conv_general_dilated',
                               'convolution')[1] == 'convolution'
  assert step_profile.classify('jit(f)/jvp(SirenDecoder)/sincos/round', 'fusion')[1] == 'sin/cos'
  assert step_profile.classify('jit(f)/jvp(ConvDecoder)/GroupNorm_0/rsqrt',
                               'fusion')[1] == 'normalisation'
  assert step_profile.classify('jit(f)/jvp(ConvDecoder)/UpConv_1/pad', 'fusion')[1] == \
      'overlap-add'
  assert step_profile.classify('jit(f)/jvp(SirenDecoder)/reshape', 'fusion')[1] == \
      'data movement'
  assert step_profile.classify('jit(f)/jvp(ConvDecoder)/elu/expm1', 'fusion')[1] == 'elementwise'
