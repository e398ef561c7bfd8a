"""The decoders' stride-2 transposed convolution as matrix products, and its derivatives.

PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1) puts input row i
times kernel row ky on output row 2i + ky - 1. Writing ky = 2q + r (q, r in
{0, 1}) and grouping output rows in pairs ("blocks") t = i + q, block t holds
output rows 2t + r - 1 and is the sum of x[t - q] K[2q + r] over q: a 2x2
window of the input times a [4 in, 4 out] matrix, on a grid of h + 1 blocks
(the first and the last half-block are the padding). The same for columns.

A layer is three bilinear maps, each with a VJP written with the other two:

* `up(x, w)`, the transposed convolution of x `[b, h, w, in]`;
* `down(y, w)`, its adjoint in x: the stride-2 convolution of y `[b, 2h, 2w, out]`
  (the tied autoencoder's encoder);
* `kgrad(x, y)`, the gradient in w of `<y, up(x, w)>`.

So every derivative of every order (the GON step differentiates its decoder
twice) is a matrix product next to copies or sums of shifted windows of
materialised arrays. Differentiated by JAX, the slicing of windows becomes
sums of zero-padded arrays (the transpose of a slice is a pad), which
XLA:CPU fused into every consumer of their result and recomputed there, in
each normalisation and activation pass of each derivative: those sums and
the transposes around them were the largest cost of the conv and
variational GON steps (docs/performance.md).
`w` is the kernel `[4, 4, in, out]` rearranged as `[4 (qy qx), in, 4 (ry rx) out]`
(`kernel_matrix`). The functions have VJPs but no JVP rules: jax.grad to any
order works, jax.jvp and jax.linear_transpose do not (use `down` for the
transpose).
"""

import jax
import jax.numpy as jnp

# Below this many output channels `up` multiplies each input pixel by the whole kernel and
# overlap-adds the taps (the windows' matrix products would have too few columns to be fast).
_NARROW = 8
_SHIFTS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (qy, qx), the order of w's first axis


def kernel_matrix(kernel: jax.Array) -> jax.Array:
  """`[4, 4, in, out]` (ky = 2 qy + ry, kx = 2 qx + rx) -> `[4 (qy qx), in, 4 (ry rx) out]`."""
  c_in, c_out = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, c_in, c_out)  # [qy, ry, qx, rx, in, out]
  return k.transpose(0, 2, 4, 1, 3, 5).reshape(4, c_in, 4 * c_out)


def _input_windows(x: jax.Array) -> jax.Array:
  """`[b, h, w, c]` -> `[b, h + 1, w + 1, 4 c]`: at block (t, s), x[t - qy, s - qx] (0 outside)."""
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, 1 - qy:h + 2 - qy, 1 - qx:w + 2 - qx] for qy, qx in _SHIFTS],
                         axis=-1)


def _to_blocks(y: jax.Array) -> jax.Array:
  """`[b, 2h, 2w, c]` -> `[b, h + 1, w + 1, 4 c]`: y padded by one pixel, 2x2 pixels a block."""
  b, height, width, c = y.shape
  h, w = height // 2 + 1, width // 2 + 1
  padded = jnp.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return padded.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, 4 * c)


def _from_blocks(blocks: jax.Array, c: int) -> jax.Array:
  """The inverse of `_to_blocks` (the padding dropped)."""
  b, h, w, _ = blocks.shape
  y = blocks.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
  return y[:, 1:-1, 1:-1]


def _block_windows(blocks: jax.Array) -> jax.Array:
  """`[b, h + 1, w + 1, C]` -> `[b * h * w, 4 C]`: at input pixel (i, j), blocks[i + qy, j + qx]."""
  b, h, w, c = blocks.shape
  windows = [blocks[:, qy:h - 1 + qy, qx:w - 1 + qx] for qy, qx in _SHIFTS]
  return jnp.concatenate(windows, axis=-1).reshape(-1, 4 * c)


def _up(x: jax.Array, w: jax.Array) -> jax.Array:
  b, h, width, c_in = x.shape
  c_out = w.shape[2] // 4
  if c_out >= _NARROW:
    blocks = _input_windows(x).reshape(-1, 4 * c_in) @ w.reshape(4 * c_in, 4 * c_out)
    return _from_blocks(blocks.reshape(b, h + 1, width + 1, 4 * c_out), c_out)
  # Each pixel times the whole kernel, then the four shifted groups of taps added.
  taps = (x.reshape(-1, c_in) @ w.transpose(1, 0, 2).reshape(c_in, 16 * c_out))
  taps = taps.reshape(b, h, width, 4, 4 * c_out)
  blocks = sum(jnp.pad(taps[:, :, :, n], ((0, 0), (qy, 1 - qy), (qx, 1 - qx), (0, 0)))
               for n, (qy, qx) in enumerate(_SHIFTS))
  return _from_blocks(blocks, c_out)


def _down(y: jax.Array, w: jax.Array) -> jax.Array:
  b, height, width, c_out = y.shape
  c_in, h, wd = w.shape[1], height // 2, width // 2
  # Every block times the kernel, then at input pixel (i, j) the four shifted products added.
  z = _to_blocks(y).reshape(-1, 4 * c_out) @ w.transpose(2, 0, 1).reshape(4 * c_out, 4 * c_in)
  z = z.reshape(b, h + 1, wd + 1, 4, c_in)
  return sum(z[:, qy:qy + h, qx:qx + wd, n] for n, (qy, qx) in enumerate(_SHIFTS))


def _kgrad(x: jax.Array, y: jax.Array) -> jax.Array:
  c_in, c_out = x.shape[-1], y.shape[-1]
  if c_out >= _NARROW:
    k = _input_windows(x).reshape(-1, 4 * c_in).T @ _to_blocks(y).reshape(-1, 4 * c_out)
    return k.reshape(4, c_in, 4 * c_out)
  k = x.reshape(-1, c_in).T @ _block_windows(_to_blocks(y))  # [in, (qy qx ry rx out)]
  return k.reshape(c_in, 4, 4 * c_out).transpose(1, 0, 2)


@jax.custom_vjp
def up(x: jax.Array, w: jax.Array) -> jax.Array:
  """The transposed convolution of `x` `[b, h, w, in]` by `w` (`kernel_matrix`): `[b, 2h, 2w, out]`."""
  return _up(x, w)


@jax.custom_vjp
def down(y: jax.Array, w: jax.Array) -> jax.Array:
  """The adjoint of `up(., w)`: the stride-2 convolution of `y` `[b, 2h, 2w, out]`, `[b, h, w, in]`."""
  return _down(y, w)


@jax.custom_vjp
def kgrad(x: jax.Array, y: jax.Array) -> jax.Array:
  """The gradient in w of `<y, up(x, w)>`: `[4, in, 4 out]`."""
  return _kgrad(x, y)


# The forward rules call the functions themselves, so that an enclosing differentiation sees them
# too. <up(x, w), y> = <x, down(y, w)> = <w, kgrad(x, y)> gives every rule.
up.defvjp(lambda x, w: (up(x, w), (x, w)),
          lambda res, g: (down(g, res[1]), kgrad(res[0], g)))
down.defvjp(lambda y, w: (down(y, w), (y, w)),
            lambda res, g: (up(g, res[1]), kgrad(g, res[0])))
kgrad.defvjp(lambda x, y: (kgrad(x, y), (x, y)),
             lambda res, g: (down(res[1], g), up(res[0], g)))
