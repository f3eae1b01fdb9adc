"""The smoothing network of Fan, Yang, Wipf, Chen, Tong (ACM TOG 2018), §4, as a Flax module.

(N, H, W, 3) images in [0, 1] -> (N, H, W, 3) smoothed images (residual learning: the network
predicts T − I and the input is added back; the output is not clipped). With the default
configuration there are 26 convolutions, all 3×3 with 64 channels except the last:
  conv1, conv2                       stride 1                                  2 layers
  conv3                              stride 2 (H, W -> ⌈H/2⌉, ⌈W/2⌉)           1 layer
  10 residual blocks × 2 convs       dilations 2,2,4,4,8,8,16,16,1,1 per block  20 layers
  transposed conv                    stride 2 (back to 2⌈H/2⌉ × 2⌈W/2⌉)        1 layer
  conv                               stride 1                                  1 layer
  final conv to 3 channels           no BatchNorm or ReLU, zero-initialised    1 layer
Dilation doubles every two blocks and the last pair of blocks is undilated (`FanNetConfig.
dilations`). Every convolution but the last is followed by BatchNorm and ReLU; inside a
residual block the second ReLU comes after the skip addition (x + BN(conv(ReLU(BN(conv(x)))))
then ReLU). Convolutions followed by BatchNorm have no bias (BatchNorm's offset replaces it).

Odd sizes: the stride-2 convolution gives ⌈n/2⌉ pixels and the transposed convolution 2⌈n/2⌉,
at most one more than n; the extra last row/column is cropped so any H, W ≥ 1 works.

BatchNorm keeps running averages in the "batch_stats" collection: call with `train=True` and
`mutable=["batch_stats"]` to normalise with batch statistics and get the updated averages;
`train=False` (inference) uses the stored averages and needs no mutable collection.
The zero-initialised last layer makes the untrained network the identity.
"""

import dataclasses

import flax.linen as nn
import jax


@dataclasses.dataclass(frozen=True)
class FanNetConfig:
  """Width and depth; defaults are the paper's 64 channels and 10 residual blocks."""

  channels: int = 64
  blocks: int = 10
  image_channels: int = 3
  bn_momentum: float = 0.9  # running average ← momentum·average + (1 − momentum)·batch value

  def __post_init__(self):
    if self.channels < 1 or self.blocks < 0:
      raise ValueError(f"need channels ≥ 1 and blocks ≥ 0, got {self.channels}, {self.blocks}")

  @property
  def dilations(self) -> tuple[int, ...]:
    """Dilation of each residual block: 2, 2, 4, 4, 8, 8, ... and 1 for the last two blocks."""
    dilated = max(self.blocks - 2, 0)
    return tuple(2 ** (1 + k // 2) for k in range(dilated)) + (1,) * (self.blocks - dilated)

  @property
  def num_conv_layers(self) -> int:
    """Number of (transposed) convolutions: 3 + 2·blocks + 3 (26 for the paper's network)."""
    return 3 + 2 * self.blocks + 3


class FanNet(nn.Module):
  """(N, H, W, 3) float32 images in [0, 1] -> (N, H, W, 3) smoothed images, any H, W ≥ 1."""

  config: FanNetConfig = FanNetConfig()

  def _norm(self, x: jax.Array, train: bool) -> jax.Array:
    return nn.BatchNorm(use_running_average=not train, momentum=self.config.bn_momentum)(x)

  def _conv_bn_relu(self, x: jax.Array, train: bool, stride: int = 1,
                    dilation: int = 1) -> jax.Array:
    x = nn.Conv(self.config.channels, (3, 3), (stride, stride), padding="SAME",
                kernel_dilation=(dilation, dilation), use_bias=False)(x)
    return nn.relu(self._norm(x, train))

  def _residual_block(self, x: jax.Array, train: bool, dilation: int) -> jax.Array:
    y = self._conv_bn_relu(x, train, dilation=dilation)
    y = nn.Conv(self.config.channels, (3, 3), padding="SAME",
                kernel_dilation=(dilation, dilation), use_bias=False)(y)
    return nn.relu(x + self._norm(y, train))

  @nn.compact
  def __call__(self, image: jax.Array, train: bool = False) -> jax.Array:
    cfg = self.config
    _, h, w, _ = image.shape
    x = self._conv_bn_relu(image, train)
    x = self._conv_bn_relu(x, train)
    x = self._conv_bn_relu(x, train, stride=2)
    for dilation in cfg.dilations:
      x = self._residual_block(x, train, dilation)
    x = nn.ConvTranspose(cfg.channels, (3, 3), (2, 2), padding="SAME", use_bias=False)(x)
    x = nn.relu(self._norm(x[:, :h, :w], train))
    x = self._conv_bn_relu(x, train)
    # Zero initialisation: training starts from the identity T = I.
    residual = nn.Conv(cfg.image_channels, (3, 3), padding="SAME",
                       kernel_init=nn.initializers.zeros)(x)
    return image + residual
