"""3×3 convolutions by Winograd's minimal filtering, F(4×4, 3×3) (Lavin & Gray 2016).

Each 4×4 block of outputs comes from a 6×6 input tile: both the tile and the kernel are
transformed (Bᵀ d B, G g Gᵀ), multiplied point by point, which over the channels is 36 matrix
products of (tiles, C) by (C, C'), and transformed back (Aᵀ m A). That is 4× fewer
multiplications than a direct convolution: the paper generator's Adam step drops from 120
to 52 GFLOP (128 channels, 256²) and took 0.93–0.95 s on this CPU against 1.23–1.36 s.
Values match XLA's convolution to about 1e-5 relative to the largest output.

The gradients are written out as the transpose of the forward pass: the output gradient is
taken back through the output transform once (Aᵀ m A transposed), then the kernel's gradient is
36 products (input tiles)ᵀ × (those tiles), transformed back with Gᵀ · G, and the input's 36
products (those tiles) × (kernel tiles)ᵀ taken back through the input transform (overlapping
tiles added up).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

_B_T = np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], np.float32)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float32)
_A_T = np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], np.float32)
_M = 4  # outputs per tile side
_T = 6  # inputs per tile side

# Where `conv3x3` beat XLA's convolution on this CPU (2 cores, AVX2; forward and backward,
# medians of 9 calls, each order once): from 64² outputs, 0.45–0.81× its time at 32–36
# channels up to 128² and 0.68–1.02× at 256×192 to 512×384, 0.55–0.75× at 64 channels,
# 0.48–0.54× at 128; but 0.79–1.20× at 32² and 0.86–1.66× at 16 channels.
MIN_CHANNELS = 32
MIN_PIXELS = 64 * 64


def worthwhile(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> bool:
  """Whether a stride-1 VALID convolution of these shapes should go through `conv3x3`."""
  _, hp, wp, _ = x_shape
  k1, k2, c, d = kernel_shape
  return ((k1, k2) == (3, 3) and min(c, d) >= MIN_CHANNELS
          and (hp - 2) * (wp - 2) >= MIN_PIXELS)


def _combine(parts: list[jax.Array], row: np.ndarray) -> jax.Array:
  """Σ row[i] · parts[i], skipping zero coefficients."""
  terms = [p if c == 1 else -p if c == -1 else float(c) * p
           for c, p in zip(row, parts, strict=True) if c != 0]
  return functools.reduce(jnp.add, terms)


def _every(x: jax.Array, axis: int, start: int, count: int) -> jax.Array:
  """`count` entries of x along `axis` from `start`, every `_M`-th."""
  return jax.lax.slice_in_dim(x, start, start + _M * (count - 1) + 1, _M, axis)


def _tiles(n: int) -> int:
  """Tiles that cover n outputs along one side."""
  return -(-n // _M)


def _input_tiles(x: jax.Array) -> list[jax.Array]:
  """(N, H+2, W+2, C) -> 36 × (N·⌈H/4⌉·⌈W/4⌉, C): Bᵀ d B of every 6×6 tile (stride 4), entry
  (i, j) of the transformed tiles at 6i + j."""
  n, hp, wp, c = x.shape
  ht, wt = _tiles(hp - 2), _tiles(wp - 2)
  x = jnp.pad(x, ((0, 0), (0, _M * ht + 2 - hp), (0, _M * wt + 2 - wp), (0, 0)))
  cols = [_every(x, 2, j, wt) for j in range(_T)]
  # Written out once, stacked: left to XLA, each of the 36 outputs recomputed its part. On the
  # AMD machine six separate arrays served below 64 channels (the 32-channel Adam step about
  # 0.98× as long, 512×384); on the Intel one the stacked array took the 32-channel step to
  # 0.955–0.962× the time of six at 256² and 0.982–0.988× at 512×384 (in one process, both
  # orders); from 64 channels it was stacked already (chosen on the AMD machine).
  u = jax.lax.optimization_barrier(jnp.stack([_combine(cols, row) for row in _B_T]))
  return [_combine([_every(uk, 1, i, ht) for i in range(_T)], row).reshape(-1, c)
          for row in _B_T for uk in u]


def _output_tiles(m: list[jax.Array], n: int, h: int, w: int) -> jax.Array:
  """36 × (N·⌈H/4⌉·⌈W/4⌉, D) -> (N, H, W, D): Aᵀ m A of every tile, put in place."""
  ht, wt, d = _tiles(h), _tiles(w), m[0].shape[-1]
  m = [mi.reshape(n, ht, wt, d) for mi in m]
  # Along the tiles' rows first, each of the six written out as (N, ht, wt, 4, D): every output
  # row is then a sum of contiguous rows of these. Left to XLA (one fusion, both steps by
  # output entry) the 32-channel generator's Adam step took 1.03–1.06× as long (256² and
  # 512×384; the same at 128 channels, 256²); this transform alone at 512×384, 32 channels:
  # 7.9 vs 20.6 ms.
  rows = jax.lax.optimization_barrier(
      [jnp.stack([_combine(m[_T * i:_T * (i + 1)], col) for col in _A_T], 3) for i in range(_T)])
  out = jnp.stack([_combine(rows, row) for row in _A_T], 2)  # (N, ht, 4, wt, 4, D)
  return out.reshape(n, _M * ht, _M * wt, d)[:, :h, :w]


def _output_tiles_transpose(dy: jax.Array) -> list[jax.Array]:
  """The transpose of `_output_tiles`: (N, H, W, D) -> 36 × (N·⌈H/4⌉·⌈W/4⌉, D)."""
  n, h, w, d = dy.shape
  ht, wt = _tiles(h), _tiles(w)
  dy = jnp.pad(dy, ((0, 0), (0, _M * ht - h), (0, _M * wt - w), (0, 0)))
  rows = [_every(dy, 1, r, ht) for r in range(_M)]
  # Written out once and stacked, as in `_input_tiles`. Six separate arrays were faster on the
  # AMD machine; on the Intel one the stacked array took the Adam step to 0.949–0.977× (32
  # channels, 256², both orders), 0.943× (512×384) and 0.971× (128 channels, 256²).
  z = jax.lax.optimization_barrier(jnp.stack([_combine(rows, col) for col in _A_T.T]))
  return [_combine([_every(zi, 2, s, wt) for s in range(_M)], col).reshape(-1, d)
          for zi in z for col in _A_T.T]


def _overlap_add(parts: list[jax.Array], axis: int) -> jax.Array:
  """The transpose of taking `_every(x, axis, i, n)` for i < 6: 6 × (.., n, ..) -> (.., 4n+2, ..),
  part i's entry t added at 4t + i."""
  n = parts[0].shape[axis]

  def pad(p, before, after):
    widths = [(0, 0)] * p.ndim
    widths[axis] = (before, after)
    return jnp.pad(p, widths)

  # Positions 4t..4t+3 hold parts 0..3 of tile t and, for the first two, parts 4, 5 of tile
  # t - 1; interleaved by a stack (padding with interior zeros and summing took 6× as long).
  phases = [pad(parts[i], 0, 1) + pad(parts[i + _M], 1, 0) if i + _M < _T
            else pad(parts[i], 0, 1) for i in range(_M)]
  out = jnp.stack(phases, axis + 1)
  out = out.reshape(out.shape[:axis] + (_M * (n + 1),) + out.shape[axis + 2:])
  return jax.lax.slice_in_dim(out, 0, _M * n + 2, axis=axis)


def _input_tiles_transpose(dv: list[jax.Array], shape: tuple[int, ...]) -> jax.Array:
  """The transpose of `_input_tiles`: 36 × (N·⌈H/4⌉·⌈W/4⌉, C) -> (N, H+2, W+2, C) `shape`."""
  n, hp, wp, c = shape
  ht, wt = _tiles(hp - 2), _tiles(wp - 2)
  dv = [d.reshape(n, ht, wt, c) for d in dv]
  du = [_overlap_add([_combine(dv[j::_T], col) for col in _B_T.T], 1) for j in range(_T)]
  dx = _overlap_add([_combine(du, col) for col in _B_T.T], 2)
  return dx[:, :hp, :wp]


def _kernel_tiles(kernel: jax.Array) -> jax.Array:
  """(3, 3, C, D) -> (36, C, D): G g Gᵀ."""
  return jnp.einsum("ai,ijcd,bj->abcd", _G, kernel, _G).reshape(_T * _T, *kernel.shape[2:])


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID stride-1 convolution (cross-correlation, as `lax.conv_general_dilated`).

  Args:
    x: (N, H+2, W+2, C) input, already padded.
    kernel: (3, 3, C, D), HWIO.

  Returns:
    (N, H, W, D).
  """
  n, hp, wp, _ = x.shape
  u = _kernel_tiles(kernel)
  # 36 separate matrix products: XLA's batched product of the same took 1.6× as long.
  products = [v @ u[p] for p, v in enumerate(_input_tiles(x))]
  return _output_tiles(products, n, hp - 2, wp - 2)


def _conv3x3_fwd(x, kernel):
  # The input tiles are recomputed in the backward pass: keeping them took as long and no
  # less memory (XLA's memory analysis of the 128-channel Adam step, 512×384).
  return conv3x3(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, dy):
  x, kernel = residuals
  c = x.shape[-1]
  u = _kernel_tiles(kernel)
  dm = _output_tiles_transpose(dy)
  d_u = jnp.stack([v.T @ g for v, g in zip(_input_tiles(x), dm, strict=True)])
  d_kernel = jnp.einsum("ai,abcd,bj->ijcd", _G, d_u.reshape(_T, _T, c, -1), _G)
  dx = _input_tiles_transpose([g @ u[p].T for p, g in enumerate(dm)], x.shape)
  return dx, d_kernel


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)
