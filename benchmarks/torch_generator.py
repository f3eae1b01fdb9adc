"""The DIP skip generator of `dipl0_jax.generator` in PyTorch, for timing comparisons only.

Layer for layer the network of `dipl0_jax.generator.SkipNet` (and of the original DIP `skip`
code): per scale a reflection-padded stride-2 3×3 convolution and a 3×3 convolution down, the
deeper scales, bilinear ×2 upsampling (align_corners=False) cropped to the scale's size, a
1×1 skip branch concatenated before the upsampled maps, BatchNorm, a 3×3 and a 1×1
convolution up; BatchNorm with batch statistics and LeakyReLU(0.2) after every convolution but
the last 1×1 one, which is followed by a sigmoid. Convolutions have biases. BatchNorm keeps no
running statistics (ours never uses any; DIP's tracked them but never read them), so the
parameters are exactly ours: 2,217,831 for the default 128-channel 5-scale network.
Sizes that are not multiples of 2^scales are cropped as ours are. One difference: PyTorch's
BatchNorm refuses a map with one value per channel, so where ours works on 1×1 deepest maps
(H and W both ≤ 2^scales, e.g. ≤ 32 for 5 scales) this network raises.

Needs torch (`pip install -e ".[bench]"`); the library never imports it.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional

DEFAULT_PARAMETERS = 2_217_831  # dipl0_jax.generator.SkipNet() for 32 input channels


class Block(nn.Sequential):
  """Reflection padding (for k > 1), a k×k convolution, BatchNorm, LeakyReLU(0.2)."""

  def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
    pad = (kernel - 1) // 2
    super().__init__(*([nn.ReflectionPad2d(pad)] if pad else []),
                     nn.Conv2d(cin, cout, kernel, stride),
                     nn.BatchNorm2d(cout, track_running_stats=False),
                     nn.LeakyReLU(0.2))

  @property
  def conv(self) -> nn.Conv2d:
    return self[-3]

  @property
  def norm(self) -> nn.BatchNorm2d:
    return self[-2]


class Level(nn.Module):
  """Scale i and, recursively, the deeper ones: (N, cin, H, W) -> (N, channels_up[i], H, W)."""

  def __init__(self, cin: int, down: tuple[int, ...], up: tuple[int, ...],
               skip: tuple[int, ...], i: int):
    super().__init__()
    self.down = nn.Sequential(Block(cin, down[i], 3, 2), Block(down[i], down[i], 3))
    self.deeper = Level(down[i], down, up, skip, i + 1) if i + 1 < len(down) else None
    k = up[i + 1] if self.deeper is not None else down[i]
    self.skip = Block(cin, skip[i], 1) if skip[i] else None
    self.norm = nn.BatchNorm2d(skip[i] + k, track_running_stats=False)
    self.up = nn.Sequential(Block(skip[i] + k, up[i], 3), Block(up[i], up[i], 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    deeper = self.down(x)
    if self.deeper is not None:
      deeper = self.deeper(deeper)
    deeper = functional.interpolate(deeper, scale_factor=2, mode="bilinear",
                                    align_corners=False)[..., :h, :w]
    if self.skip is not None:
      deeper = torch.cat([self.skip(x), deeper], dim=1)
    return self.up(self.norm(deeper))

  def in_flax_order(self):
    """(convolution or None, BatchNorm) pairs in the order the Flax module creates them."""
    for block in self.down:
      yield block.conv, block.norm
    if self.deeper is not None:
      yield from self.deeper.in_flax_order()
    if self.skip is not None:
      yield self.skip.conv, self.skip.norm
    yield None, self.norm
    for block in self.up:
      yield block.conv, block.norm


class SkipNet(nn.Module):
  """(N, input_channels, H, W) noise -> (N, output_channels, H, W) image in (0, 1)."""

  def __init__(self, input_channels: int = 32, channels_down: tuple[int, ...] = (128,) * 5,
               channels_up: tuple[int, ...] = (128,) * 5,
               channels_skip: tuple[int, ...] = (4,) * 5, output_channels: int = 3):
    super().__init__()
    self.level = Level(input_channels, channels_down, channels_up, channels_skip, 0)
    self.out = nn.Conv2d(channels_up[0], output_channels, 1)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(self.out(self.level(z)))

  @classmethod
  def like(cls, config) -> "SkipNet":
    """The network of a `dipl0_jax.generator.GeneratorConfig` (bilinear, reflect, leaky)."""
    if (config.upsample, config.padding, config.activation) != (
        "bilinear", "reflect", "leaky_relu"):
      raise ValueError(f"only the paper's bilinear/reflect/leaky_relu network, got {config}")
    return cls(config.input_channels, config.channels_down, config.channels_up,
               config.channels_skip, config.output_channels)


def num_parameters(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def load_flax_params(model: SkipNet, variables: dict) -> None:
  """Copies `dipl0_jax.generator.SkipNet` parameters ({"params": ...}) into `model`.

  Flax names the submodules Conv_k and BatchStatNorm_k in creation order, which
  `Level.in_flax_order` follows; kernels go from (kh, kw, in, out) to (out, in, kh, kw).
  """
  params = variables["params"]
  convs = iter(params[f"Conv_{k}"]["Conv_0"] for k in range(len(
      [n for n in params if n.startswith("Conv_")])))
  norms = iter(params[f"BatchStatNorm_{k}"] for k in range(len(
      [n for n in params if n.startswith("BatchStatNorm_")])))

  def put(tensor: torch.Tensor, value) -> None:
    value = torch.from_numpy(np.array(value, np.float32))
    if value.shape != tensor.shape:
      raise ValueError(f"shape {tuple(value.shape)} for a {tuple(tensor.shape)} tensor")
    tensor.copy_(value)

  def put_conv(conv: nn.Conv2d, p: dict) -> None:
    put(conv.weight, np.transpose(np.asarray(p["kernel"]), (3, 2, 0, 1)))
    put(conv.bias, p["bias"])

  with torch.no_grad():
    for conv, norm in model.level.in_flax_order():
      if conv is not None:
        put_conv(conv, next(convs))
      p = next(norms)
      put(norm.weight, p["scale"])
      put(norm.bias, p["bias"])
    put_conv(model.out, next(convs))
  if next(convs, None) is not None or next(norms, None) is not None:
    raise ValueError("the Flax parameters have more layers than the PyTorch network")


class DipStep:
  """One DIP Adam step as `dipl0_jax.deep_image_prior.step` takes it, in PyTorch.

  Adam (PyTorch's defaults, as optax's) on mean((f_θ(z + σn) − y)²) with fresh Gaussian n each
  step, then the moving average of the output. z: (1, C_in, H, W), y: (1, 3, H, W).
  """

  def __init__(self, model: SkipNet, z: torch.Tensor, y: torch.Tensor, *, lr: float = 0.01,
               reg_noise_std: float = 1.0 / 30.0, ema: float = 0.99):
    self.model, self.z, self.y = model, z, y
    self.reg_noise_std, self.ema = reg_noise_std, ema
    self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    self.avg = torch.zeros_like(y)

  def __call__(self) -> torch.Tensor:
    self.optimizer.zero_grad(set_to_none=True)
    out = self.model(self.z + self.reg_noise_std * torch.randn_like(self.z))
    loss = functional.mse_loss(out, self.y)
    loss.backward()
    self.optimizer.step()
    with torch.no_grad():
      self.avg.mul_(self.ema).add_(out, alpha=1.0 - self.ema)
    return loss.detach()


if __name__ == "__main__":
  n = num_parameters(SkipNet())
  assert n == DEFAULT_PARAMETERS, n
  print(f"PyTorch SkipNet(): {n:,} parameters")
