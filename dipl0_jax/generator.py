"""The Deep Image Prior "skip" encoder–decoder (Ulyanov et al. 2018) as a Flax module.

Defaults are the network the DIP-ℓ0 authors ran: 5 scales of 128 channels, 4-channel 1×1
skips, stride-2 3×3 convolutions down, bilinear ×2 up, reflection padding, BatchNorm with batch
statistics and LeakyReLU(0.2) after every convolution, a final 1×1 convolution and a sigmoid.
About 2.2 M parameters.

Any H×W works (the paper's NKS images are 512 wide and 277–397 high): a stride-2 convolution
maps n to ceil(n/2) pixels, the ×2 upsampling maps that to 2·ceil(n/2) ≥ n, and the decoder
crops it back to n (the first n rows and columns, which is the centre crop of the DIP code
since the excess is at most one pixel) before joining the skip branch. Below 2^scales pixels
the deepest levels work on 1×1 maps; reflection padding needs ≥ 2 pixels, so the minimum
size is 2^(scales−1) + 1 per side (17 for 5 scales).
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dipl0_jax import winograd


def _torch_uniform(fan_in: int):
  """PyTorch's default Conv2d initialisation: U(−1/√fan_in, 1/√fan_in)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """VALID convolution of (N, H, W, C) x with an (k, k, C, C') kernel."""
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def strided_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """VALID convolution of (N, H, W, C) x with a (k, k, C, C') kernel at stride s.

  Values and input gradient are XLA's. The kernel gradient is k² matrix products over the
  output pixels, one per kernel tap: dy against the strided slice of x that tap reads. XLA's
  own kernel gradient of a stride-2 convolution costs as much as a stride-1 one at four times
  the output size; a stride-1 one of the input's s×s phases (an earlier release) made XLA copy
  the phases channels-major, 6.6–14.3 ms of a 100 ms Adam step (32 channels, 256², 2 Intel
  Xeon cores). With the taps the step took 0.93–0.97× the time (README "Performance").
  """
  return _conv(x, kernel, stride)


def _strided_conv_fwd(x, kernel, stride):
  return _conv(x, kernel, stride), (x, kernel)


def _strided_conv_bwd(stride, residuals, dy):
  x, kernel = residuals
  k = kernel.shape[0]
  _, ho, wo, _ = dy.shape

  def tap(i, j):
    return x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]

  d_kernel = jnp.stack([_kernel_gradient(tap(i, j), dy) for i in range(k) for j in range(k)])
  dx = jax.vjp(lambda x: _conv(x, kernel, stride), x)[1](dy)[0]
  return dx, d_kernel.reshape(kernel.shape)


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


@jax.custom_vjp
def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1×1 convolution of (N, H, W, C) x with a (1, 1, C, C') kernel.

  Values are XLA's. The gradients are matrix products over the N·H·W pixels: XLA's kernel
  gradient of a 1×1 convolution first copies x channels-major and took 2.4–5.6× as long on
  this CPU (128→128 and 32→4 channels at 256²).
  """
  return _conv(x, kernel, 1)


def _pointwise_conv_fwd(x, kernel):
  return _conv(x, kernel, 1), (x, kernel)


def _pixel_products(a: jax.Array, b: jax.Array, blocks: int = 8) -> jax.Array:
  """Σ over pixels of aᵀb, (C, D), for (N, H, W, C) a and (N, H, W, D) b.

  As the sum of `blocks` products over consecutive rows (fewer when they do not divide the
  pixels): XLA's one product over 256² pixels took 2.9–4× as long for 32→3 and 32→4 channels
  and 1.5× for 128→128 on this CPU.
  """
  a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
  blocks = math.gcd(blocks, a.shape[0])
  a, b = a.reshape(blocks, -1, a.shape[-1]), b.reshape(blocks, -1, b.shape[-1])
  return jax.lax.dot_general(a, b, (((1,), (1,)), ((0,), (0,)))).sum(0)


def _kernel_gradient(x: jax.Array, dy: jax.Array) -> jax.Array:
  """(C, D) kernel gradient of a 1×1 convolution from (N, H, W, C) x to (N, H, W, D) dy."""
  # XLA copies one operand channels-major first: let it be the narrower one.
  if dy.shape[-1] < x.shape[-1]:
    return _pixel_products(dy, x).T
  return _pixel_products(x, dy)


def _pointwise_conv_bwd(residuals, dy):
  x, kernel = residuals
  d_kernel = _kernel_gradient(x, dy).reshape(kernel.shape)
  return _input_gradient(dy, kernel[0, 0]), d_kernel


def _input_gradient(dy: jax.Array, kernel: jax.Array) -> jax.Array:
  """(N, H, W, C) product of (N, H, W, D) dy with a (C, D) kernel's transpose.

  Fewer than 4 channels D are padded with zeros to 4: XLA's product over 2 or 3 took 2.7–7.4× as
  long as the padded one for C = 32 and 128 at 256² and 512×384 on this CPU (42 vs 9 ms from the
  generator's 3 output channels to 128 at 512×384; over 1 channel 0.9–12×).
  """
  if (pad := 4 - dy.shape[-1]) > 0:
    dy = jnp.pad(dy, ((0, 0),) * (dy.ndim - 1) + ((0, pad),))
    kernel = jnp.pad(kernel, ((0, 0), (0, pad)))
  return jax.lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())))


pointwise_conv.defvjp(_pointwise_conv_fwd, _pointwise_conv_bwd)


def _flax_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for `nn.Conv` (NHWC, HWIO), through `strided_conv` when the
  stride is > 1, `pointwise_conv` when the kernel is 1×1 and `winograd.conv3x3` for wide
  enough 3×3 ones (`winograd.worthwhile`)."""
  assert feature_group_count == 1 and window_strides[0] == window_strides[1]
  assert all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  del precision  # float32 throughout
  if padding != "VALID":  # explicit zero padding, ((top, bottom), (left, right))
    lhs = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
  if window_strides[0] > 1:
    return strided_conv(lhs, rhs, window_strides[0])
  if rhs.shape[:2] == (1, 1):
    return pointwise_conv(lhs, rhs)
  if winograd.worthwhile(lhs.shape, rhs.shape):
    return winograd.conv3x3(lhs, rhs)
  return _conv(lhs, rhs, 1)


def _reflect_bands(n: int, pad: int) -> list[tuple[int, int, bool, tuple[int, int]]]:
  """A padded axis of n + 2·pad as (start, stop, reversed, zero padding back to n) bands."""
  return [(0, pad, True, (1, n - 1 - pad)), (pad, pad + n, False, (0, 0)),
          (pad + n, n + 2 * pad, True, (n - 1 - pad, 1))]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """(N, H, W, C) -> (N, H + 2p, W + 2p, C), reflection padding (`jnp.pad`'s "reflect").

  The gradient is one elementwise pass: the nine blocks of the padded cotangent (corners,
  edges, centre), each flipped and zero-padded back to H×W, summed. XLA's transpose of
  `jnp.pad` took four passes; with one the DIP Adam step (32 channels) took 0.94–0.97× the time
  (README "Performance").
  """
  return _reflect(x, pad)


def _reflect(x: jax.Array, pad: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _reflect_pad_fwd(x, pad):
  return reflect_pad(x, pad), None


def _reflect_pad_bwd(pad, _, g):
  h, w = g.shape[1] - 2 * pad, g.shape[2] - 2 * pad
  if min(h, w) <= pad:  # a reflection wraps more than once (the deepest levels' 1×1 maps)
    # The example primal, a slice of g, carries g's type under shard_map (its varying axes).
    return jax.linear_transpose(functools.partial(_reflect, pad=pad), g[:, :h, :w])(g)
  dx = 0.0
  for top, bottom, flip_rows, rows in _reflect_bands(h, pad):
    for left, right, flip_cols, cols in _reflect_bands(w, pad):
      block = g[:, top:bottom, left:right]
      flips = (1,) * flip_rows + (2,) * flip_cols
      block = jax.lax.rev(block, flips) if flips else block
      dx = dx + jnp.pad(block, ((0, 0), rows, cols, (0, 0)))
  return (dx,)


reflect_pad.defvjp(_reflect_pad_fwd, _reflect_pad_bwd)


class Conv(nn.Module):
  """k×k convolution, stride s, 'same'-style padding by reflection or zeros (DIP's `conv`)."""

  features: int
  kernel: int
  stride: int = 1
  padding: str = "reflect"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad = (self.kernel - 1) // 2
    fan_in = x.shape[-1] * self.kernel * self.kernel
    if pad and self.padding == "reflect":
      x = reflect_pad(x, pad)
      padding = "VALID"
    else:
      padding = [(pad, pad), (pad, pad)]
    return nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                   padding=padding, kernel_init=_torch_uniform(fan_in),
                   bias_init=_torch_uniform(fan_in),
                   conv_general_dilated=_flax_conv)(x)


def _stats(x: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and 1/std of (N, H, W, C) x, variance by the two-pass formula."""
  mean = jnp.mean(x, axis=(0, 1, 2))
  var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
  return mean, jax.lax.rsqrt(var + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """(N, H, W, C) x normalised per channel with its own statistics, then scaled and shifted.

  Its gradient is written out (the textbook BatchNorm backward: two per-channel sums, which
  are also the gradients of `scale` and `bias`) instead of differentiating the two-pass
  formula, which made XLA reduce over the activations several more times: 0.89–0.90× the
  time of a generator's Adam step on this CPU (32 channels at 256², 128 at 128²).
  """
  return _batch_norm_fwd(x, scale, bias, epsilon)[0]


def _batch_norm_fwd(x, scale, bias, epsilon):
  mean, rstd = _stats(x, epsilon)
  return (x - mean) * rstd * scale + bias, (x, mean, rstd, scale)


def _batch_norm_bwd(epsilon, residuals, dy):
  del epsilon
  x, mean, rstd, scale = residuals
  n = x.shape[0] * x.shape[1] * x.shape[2]
  x_hat = (x - mean) * rstd
  d_bias = jnp.sum(dy, axis=(0, 1, 2))
  d_scale = jnp.sum(dy * x_hat, axis=(0, 1, 2))
  dx = (scale * rstd / n) * (n * dy - d_bias - x_hat * d_scale)
  return dx, d_scale, d_bias


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchStatNorm(nn.Module):
  """BatchNorm that always normalises with the batch's own statistics (PyTorch train mode).

  DIP never switches its network to evaluation mode, so no running averages are kept.
  """

  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
    return batch_norm(x, scale, bias, self.epsilon)


ACTIVATIONS = {
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "relu": nn.relu,
    "elu": nn.elu,
}


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """Architecture of the skip network; defaults are the DIP-ℓ0 paper's."""

  input_channels: int = 32
  channels_down: tuple[int, ...] = (128,) * 5
  channels_up: tuple[int, ...] = (128,) * 5
  channels_skip: tuple[int, ...] = (4,) * 5
  output_channels: int = 3
  upsample: str = "bilinear"  # or "nearest"
  padding: str = "reflect"  # or "zeros"
  activation: str = "leaky_relu"
  input_scale: float = 0.1  # the input is U[0, 1) noise times this

  def __post_init__(self):
    n = len(self.channels_down)
    if len(self.channels_up) != n or len(self.channels_skip) != n:
      raise ValueError("channels_down, channels_up and channels_skip need one entry per scale")
    if self.upsample not in ("bilinear", "nearest"):
      raise ValueError(f"upsample must be 'bilinear' or 'nearest', not {self.upsample!r}")
    if self.padding not in ("reflect", "zeros"):
      raise ValueError(f"padding must be 'reflect' or 'zeros', not {self.padding!r}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")

  @property
  def min_size(self) -> int:
    """Smallest height or width the network accepts."""
    return 2 ** (len(self.channels_down) - 1) + 1

  def resized(self, channels: int, scales: int) -> "GeneratorConfig":
    """This architecture with `channels` at each of `scales` scales and 4-channel skips."""
    return dataclasses.replace(self, channels_down=(channels,) * scales,
                               channels_up=(channels,) * scales, channels_skip=(4,) * scales)


def _upsample2_axis(x: jax.Array, axis: int) -> jax.Array:
  """×2 linear interpolation along one axis, half-pixel centres, edges clamped."""
  n = x.shape[axis]
  edge = functools.partial(jax.lax.slice_in_dim, x, axis=axis)
  before = jnp.concatenate([edge(0, 1), edge(0, n - 1)], axis)  # x[max(i − 1, 0)]
  after = jnp.concatenate([edge(1, n), edge(n - 1, n)], axis)  # x[min(i + 1, n − 1)]
  pairs = jnp.stack([0.25 * before + 0.75 * x, 0.75 * x + 0.25 * after], axis + 1)
  return pairs.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])


def upsample2(x: jax.Array, method: str) -> jax.Array:
  """(N, H, W, C) -> (N, 2H, 2W, C), bilinear or nearest.

  Bilinear equals `jax.image.resize` and PyTorch's `align_corners=False` upsampling (to float
  rounding) as two two-tap stencils, out[2i] = ¼x[i−1] + ¾x[i], out[2i+1] = ¾x[i] + ¼x[i+1]:
  `jax.image.resize` multiplies by dense interpolation matrices, which with its transposes
  took 1.3–2.2× as long, forward and backward (64² and 128² inputs, 32 and 128 channels).
  """
  if method == "nearest":
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return _upsample2_axis(_upsample2_axis(x, 1), 2)


class SkipNet(nn.Module):
  """(N, H, W, input_channels) noise -> (N, H, W, output_channels) image in (0, 1)."""

  config: GeneratorConfig = GeneratorConfig()

  def _block(self, x, features, kernel, stride=1):
    x = Conv(features, kernel, stride, self.config.padding)(x)
    return ACTIVATIONS[self.config.activation](BatchStatNorm()(x))

  def _level(self, x: jax.Array, i: int) -> jax.Array:
    cfg = self.config
    _, h, w, _ = x.shape
    deeper = self._block(x, cfg.channels_down[i], 3, stride=2)
    deeper = self._block(deeper, cfg.channels_down[i], 3)
    if i + 1 < len(cfg.channels_down):
      deeper = self._level(deeper, i + 1)
    deeper = upsample2(deeper, cfg.upsample)[:, :h, :w]
    if cfg.channels_skip[i]:
      skip = self._block(x, cfg.channels_skip[i], 1)
      deeper = jnp.concatenate([skip, deeper], axis=-1)
    x = BatchStatNorm()(deeper)
    x = self._block(x, cfg.channels_up[i], 3)
    return self._block(x, cfg.channels_up[i], 1)

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    cfg = self.config
    if min(z.shape[1:3]) < cfg.min_size:
      raise ValueError(f"the generator needs H, W ≥ {cfg.min_size}, got {z.shape[1:3]}")
    x = self._level(z, 0)
    x = Conv(cfg.output_channels, 1, padding=cfg.padding)(x)
    return nn.sigmoid(x)


def training_bytes(height: int, width: int, config: GeneratorConfig) -> int:
  """Estimated peak memory (bytes) of one Adam step of the generator on an H×W image.

  Calibrated on XLA's memory analysis of the compiled step on CPU: about 88 bytes per pixel
  per channel of the widest scale (11.3 KB per pixel for the paper's 128-channel network),
  plus parameters and optimiser state.
  """
  width_channels = max(config.channels_down[0], config.channels_up[0])
  return int(88 * height * width * width_channels) + 64 * 2**20


def input_noise(key: jax.Array, height: int, width: int, config: GeneratorConfig) -> jax.Array:
  """The generator's fixed input z: (H, W, input_channels) of U[0, 1) × input_scale."""
  return config.input_scale * jax.random.uniform(key, (height, width, config.input_channels))


def generate(params: dict, z: jax.Array, config: GeneratorConfig) -> jax.Array:
  """f_θ(z): (H, W, input_channels) -> (H, W, output_channels) in (0, 1)."""
  return SkipNet(config).apply(params, z[None])[0]


def init_generator(key: jax.Array, shape: tuple[int, ...], config: GeneratorConfig):
  """Generator parameters and its fixed input z for (H, W, C) outputs."""
  z_key, params_key = jax.random.split(key)
  z = input_noise(z_key, shape[0], shape[1], config)
  return SkipNet(config).init(params_key, z[None]), z
