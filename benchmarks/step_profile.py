"""Where a compiled train step spends its time: by pass and by kind of operation.

`jax.profiler` traces a few steps (a Perfetto trace: one event per XLA
operation run); each operation's name is looked up in the compiled HLO,
whose metadata holds the JAX transformations and Flax module it came from:

* pass: the GON step is value_and_grad(outer) around grad(inner), so an
  operation of the decoder under `jvp(jvp(...))` is the inner forward pass
  F(z0), `jvp(transpose(jvp(...)))` the inner backward pass to z0,
  `jvp(...)` the outer forward pass F(z), `transpose(jvp(...))` the outer
  backward pass, and `transpose(jvp(jvp(...)))` or
  `transpose(jvp(transpose(jvp(...))))` the second-order backward pass
  through the inner gradient. Operations outside the decoder are the
  optimiser and everything else (random numbers, loss sums, the non-finite
  guard).
* kind: matrix products, convolutions, the transposed convolutions'
  overlap-add (everything but their matrix product), sines and cosines,
  normalisation, other data movement, other elementwise work.
"""

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

PASSES = ('inner forward', 'inner backward', 'outer forward', 'outer backward',
          'second order', 'optimiser and other')
KINDS = ('matmul', 'convolution', 'overlap-add', 'sin/cos', 'normalisation', 'data movement',
         'elementwise')
_DECODERS = ('ConvDecoder', 'SirenDecoder', 'VariationalDecoder', 'LatentClassifier')
_DATA_MOVEMENT = ('pad', 'slice', 'transpose', 'reshape', 'concatenate', 'copy', 'gather',
                  'broadcast_in_dim', 'dynamic_slice', 'dynamic_update_slice', 'rev')
# Container operations whose events enclose the events of the operations they run.
_CONTAINERS = ('while', 'call', 'conditional')


def _pass_of(transforms: list[str]) -> str:
  """The pass of the step from the decoder's enclosing transformations, outermost first.

  The outer value_and_grad is a jvp, then a transpose of it; the inner
  gradient adds a jvp (and a transpose for its backward pass) inside.
  """
  if transforms[:1] == ['jvp']:
    if len(transforms) == 1:
      return 'outer forward'
    return 'inner backward' if 'transpose' in transforms else 'inner forward'
  if transforms[:1] == ['transpose']:
    return 'outer backward' if transforms == ['transpose', 'jvp'] else 'second order'
  return PASSES[-1]


def classify(op_name: str, opcode: str) -> tuple[str, str]:
  """`(pass, kind)` of an HLO operation from its metadata op_name and opcode.

  Args:
    op_name: e.g. 'jit(train_step)/jvp(transpose(jvp(ConvDecoder)))/UpConv_1/dot_general'.
    opcode: the HLO opcode ('dot', 'convolution', 'fusion', ...).
  """
  decoder = next((d for d in _DECODERS if d + ')' in op_name or '/' + d + '/' in op_name), None)
  if decoder is None:
    step_pass = PASSES[-1]
  else:
    transforms = re.findall(r'(jvp|transpose)\(', op_name[:op_name.index(decoder)])
    step_pass = _pass_of(transforms)
  primitive = op_name.rsplit('/', 1)[-1]
  if opcode == 'dot' or primitive in ('dot_general', 'matmul') or '->' in primitive:
    kind = 'matmul'
  elif opcode == 'convolution' or primitive == 'conv_general_dilated':
    kind = 'convolution'
  elif '/UpConv_' in op_name:  # the transposed convolutions' adds, pads and slices
    kind = 'overlap-add'
  elif primitive in ('sin', 'cos', 'sincos') or 'sincos' in op_name or '/sin' in op_name:
    kind = 'sin/cos'
  elif any(norm in op_name for norm in ('GroupNorm', 'BatchNorm', 'LayerNorm')):
    kind = 'normalisation'
  elif primitive in _DATA_MOVEMENT or opcode in _DATA_MOVEMENT:
    kind = 'data movement'
  else:
    kind = 'elementwise'
  return step_pass, kind


def _operations(hlo_text: str) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (opcode, metadata op_name), for every instruction."""
  operations, unnamed = {}, {}
  for line in hlo_text.splitlines():
    match = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = .*?\s([a-z][a-z\-]*)\((.*)', line)
    if match:
      name, opcode, rest = match.groups()
      op_name = re.search(r'op_name="([^"]*)"', line)
      operations[name] = (opcode, op_name.group(1) if op_name else '')
      if not op_name:
        unnamed[name] = opcode
      # XLA:CPU splits a reduction into a partial `wrapped_reduce-window` without metadata
      # and a final reduce with it: the partial one belongs to its consumer's pass.
      for operand in re.findall(r'%([\w.\-]+)', rest.split('), ')[0]):
        if operand in unnamed and op_name:
          operations[operand] = (unnamed.pop(operand), op_name.group(1))
  return operations


def _fusion_kinds(hlo_text: str) -> dict[str, str]:
  """Fused computation name -> 'matmul' / 'convolution' if it holds one."""
  kinds, current = {}, None
  for line in hlo_text.splitlines():
    header = re.match(r'^%?([\w.\-]+) .*\{$', line)
    if header:
      current = header.group(1)
    elif current and re.search(r'= \S+ (dot|convolution)\(', line):
      kinds.setdefault(current, 'matmul' if ' dot(' in line else 'convolution')
  return kinds


def profile(compiled, state, batch, num_steps: int) -> dict:
  """Traces `num_steps` steps of `compiled(state, batch)`; milliseconds per step.

  Returns:
    `{'step_ms': wall time per step while tracing, 'ops_ms': summed operation time,
    'by_pass': {pass: ms}, 'by_kind': {kind: ms}, 'table': {pass: {kind: ms}},
    'top': [(operation, pass, kind, ms), ...] the ten most expensive}`.
  """
  hlo = compiled.as_text()
  operations, fusion_kinds = _operations(hlo), _fusion_kinds(hlo)
  calls = dict(re.findall(r'%?([\w.\-]+) = .*?fusion\(.*?calls=%?([\w.\-]+)', hlo))
  state, metrics = compiled(state, batch)  # the state was donated: keep the new one
  jax.block_until_ready(metrics)
  with tempfile.TemporaryDirectory() as folder:
    start = time.perf_counter()
    jax.profiler.start_trace(folder, create_perfetto_trace=True)
    for _ in range(num_steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    wall = time.perf_counter() - start
    trace_file = glob.glob(os.path.join(folder, '**', '*.trace.json.gz'), recursive=True)[0]
    with gzip.open(trace_file) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  table = collections.defaultdict(lambda: collections.defaultdict(float))
  per_op = collections.Counter()
  for event in events:
    name = event.get('name', '')
    if event.get('ph') != 'X' or name not in operations or name.startswith(_CONTAINERS):
      continue
    opcode, op_name = operations[name]
    step_pass, kind = classify(op_name, opcode)
    if opcode == 'fusion' and name in calls and calls[name] in fusion_kinds:
      kind = fusion_kinds[calls[name]]
    ms = event['dur'] / 1000 / num_steps
    table[step_pass][kind] += ms
    per_op[(name, step_pass, kind)] += ms
  by_pass = {p: sum(table[p].values()) for p in PASSES}
  by_kind = {k: sum(table[p][k] for p in PASSES) for k in KINDS}
  return {'step_ms': 1000 * wall / num_steps, 'ops_ms': sum(by_pass.values()),
          'by_pass': by_pass, 'by_kind': by_kind,
          'table': {p: {k: table[p][k] for k in KINDS} for p in PASSES},
          'top': [(*key, ms) for key, ms in per_op.most_common(10)]}


def format_table(result: dict) -> str:
  """A Markdown table: passes as rows, kinds as columns, ms per step."""
  lines = ['| pass | ' + ' | '.join(KINDS) + ' | total |',
           '|---' * (len(KINDS) + 2) + '|']
  for step_pass in PASSES:
    row = result['table'][step_pass]
    lines.append(f'| {step_pass} | ' + ' | '.join(f'{row[k]:.2f}' for k in KINDS)
                 + f' | {result["by_pass"][step_pass]:.2f} |')
  lines.append('| total | ' + ' | '.join(f'{result["by_kind"][k]:.2f}' for k in KINDS)
               + f' | {result["ops_ms"]:.2f} |')
  return '\n'.join(lines)
