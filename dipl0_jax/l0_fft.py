"""ℓ0 gradient minimisation (Xu, Lu, Xu, Jia 2011) by half-quadratic splitting and FFTs.

Solves approximately   min_S ‖S − I‖² + λ·C(S),   C(S) = #{p : (∂x S_p, ∂y S_p) ≠ 0},
on (H, W, C) images with periodic boundaries. Each step alternates
  (h, v) = (∂x S, ∂y S), zeroed where Σ_c (h² + v²) < λ/β          (paper eq. 12)
  S = F⁻¹[(F(I) + β F(∂xᵀh + ∂yᵀv)) / (1 + β(|F(∂x)|² + |F(∂y)|²))]  (paper eq. 8)
and β ← κβ from β₀ = 2λ while β < β_max.

Eq. 8 divides by a real spectrum that is even (its value at −k equals that at k), so the
2-D Hartley transform 𝓗 = Re F − Im F, a real transform with 𝓗𝓗 = HW·Id, diagonalises it too:
  S = 𝓗[(𝓗(I) + β 𝓗(∂xᵀh + ∂yᵀv)) / (1 + β(|F(∂x)|² + |F(∂y)|²))] / HW.
Each step then takes two forward real FFTs instead of a forward and an inverse one; XLA's
inverse real 2-D FFT takes about 1.8× the time of its forward one on CPU, and the whole solve
took 0.87 / 0.80 / 0.93× the time at 320×240 / 640×480 / 1280×720 (medians of 10 alternated
pairs in one process).
"""

import functools
import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dipl0_jax import checks, sharding


def _difference_spectrum(h: int, w: int) -> jax.Array:
  """|F(∂x)|² + |F(∂y)|² on the full (H, W) frequency grid, float32."""
  # The DFT of a periodic forward difference is e^{2πik/N} − 1, whose squared modulus is
  # 2 − 2cos(2πk/N): no FFT of the kernels is needed. The two 1-D spectra are NumPy
  # constants: XLA computed the cosines once per element of the (H, W) sum (0.5 ms at 640×480).
  ky = (2.0 - 2.0 * np.cos(2.0 * np.pi * np.arange(h) / h)).astype(np.float32)
  kx = (2.0 - 2.0 * np.cos(2.0 * np.pi * np.arange(w) / w)).astype(np.float32)
  return jnp.asarray(ky)[:, None] + jnp.asarray(kx)[None, :]


def _negated_rows(a: jax.Array) -> jax.Array:
  """a[..., (−k) mod H, :] for every row k of (..., H, W)."""
  return jnp.concatenate([a[..., :1, :], jnp.flip(a[..., 1:, :], -2)], -2)


def _halves(planes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The two halves of 𝓗 = Re F − Im F from one `rfft2` of real (..., H, W) planes.

  left (..., H, W//2 + 1) is 𝓗 at columns k₂ ≤ W/2 (Re − Im of the half spectrum); by Hermitian
  symmetry, F(k₁, W − j) = conj F(−k₁, j), column j of mirrored (Re + Im at row −k₁ mod H) is
  𝓗 at column W − j.
  """
  f = jnp.fft.rfft2(planes)
  return f.real - f.imag, _negated_rows(f.real + f.imag)


def _place(piece: jax.Array, first: int, width: int) -> jax.Array:
  """piece zero-padded along its last axis to `width`, starting at column `first`."""
  no_pad = [(0, 0)] * (piece.ndim - 1)
  return jnp.pad(piece, [*no_pad, (first, width - first - piece.shape[-1])])


def hartley2(planes: jax.Array) -> jax.Array:
  """2-D discrete Hartley transform Re F − Im F over the last two axes of real (..., H, W).

  Unnormalised, so applying it twice multiplies by H·W. Computed from one `rfft2` (`_halves`).
  """
  w = planes.shape[-1]
  left, mirrored = _halves(planes)
  half = left.shape[-1]
  # Two zero-padded halves summed rather than concatenated: XLA fuses this into one pass,
  # where a concatenation cost a separate copy (whole solve at 640×480: 0.73 against 0.82
  # of the forward/inverse solve's time, alternated in one process).
  return _place(left, 0, w) + _place(jnp.flip(mirrored[..., 1:w - half + 1], -1), half, w)


def _wrap_rows(a: jax.Array) -> jax.Array:
  """(..., H, W) → (..., H + 2, W) with the last row above and the first row below."""
  return jnp.concatenate([a[..., -1:, :], a, a[..., :1, :]], -2)


def _hartley2_wrapped(planes: jax.Array) -> jax.Array:
  """`hartley2` wrap-padded by one on each side: out[..., a, b] = 𝓗[..., a − 1, b − 1] mod (H, W).

  The solver carries its image in this form for the divergence's periodic differences. Built,
  like `hartley2`, as zero-padded pieces summed, so that XLA writes it from the spectrum in
  one pass: padding `hartley2`'s output afterwards took two more copies (0.90–0.94× the solve's
  time with this, 320×240 to 1280×720, the same output bit for bit; README "Where the time
  goes").
  """
  w = planes.shape[-1]
  left, mirrored = (_wrap_rows(a) for a in _halves(planes))
  half = left.shape[-1]
  # Padded column 0 is 𝓗's last column, in `mirrored` unless W ≤ 2 (no mirrored columns).
  last = left[..., w - 1:w] if w - 1 < half else mirrored[..., 1:2]
  return (_place(left, 1, w + 2) + _place(left[..., :1], w + 1, w + 2) + _place(last, 0, w + 2)
          + _place(jnp.flip(mirrored[..., 1:w - half + 1], -1), half + 1, w + 2))


def _thresholded_divergence(p: jax.Array, threshold: jax.Array) -> jax.Array:
  """∂xᵀh + ∂yᵀv for (h, v) = (∂x s, ∂y s) zeroed where Σ_c (h² + v²) < threshold.

  Args:
    p: (C, H + 2, W + 2) planes s wrap-padded by one on each side, p[:, a, b] = s[:, a − 1,
      b − 1] (periodic differences).
    threshold: scalar.

  Returns:
    (C, H, W), equal to composing `differences.dx`, `dy`, `dx_t` and `dy_t`.
  """
  # gh[:, a, b] and gv[:, a, b] are the gradient at pixel (a − 1, b − 1), for pixels −1 … H−1
  # and −1 … W−1, so that all four differences and the adjoints are slices of one array.
  # Slices of a padded copy took about two thirds of the time of six rolls (jnp.roll is a
  # slice and a concatenation), measured at 640×480.
  gh = p[:, :-1, 1:] - p[:, :-1, :-1]
  gv = p[:, 1:, :-1] - p[:, :-1, :-1]
  keep = jnp.sum(gh * gh + gv * gv, axis=0) >= threshold
  gh, gv = gh * keep, gv * keep
  return (gh[:, 1:, :-1] - gh[:, 1:, 1:]) + (gv[:, :-1, 1:] - gv[:, 1:, 1:])


def num_steps(lam: float, *, kappa: float = 2.0, beta_max: float = 1e5) -> int:
  """Number of β values 2λ, 2λκ, ... that are below β_max (the solver's iteration count)."""
  if lam <= 0:
    return 0
  return max(0, math.ceil(math.log(beta_max / (2.0 * lam)) / math.log(kappa) - 1e-12))


def _start(image: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """What both solves start from, besides the Hartley transform of the planes: (C, H, W)
  planes of the (H, W, C) image, |F(∂x)|² + |F(∂y)|² (H, W), and the planes wrap-padded by
  one (C, H + 2, W + 2)."""
  h, w, _ = image.shape
  # The loops work on (C, H, W): XLA's FFTs want their axes innermost, and this layout saves
  # two transposes per iteration (15% of a 640×480 solve, measured).
  planes = jnp.transpose(image, (2, 0, 1))
  padded = jnp.pad(planes, ((0, 0), (1, 1), (1, 1)), mode="wrap")
  return planes, _difference_spectrum(h, w).astype(image.dtype), padded


def _result(padded: jax.Array) -> jax.Array:
  """(C, H + 2, W + 2) wrap-padded planes → the (H, W, C) image."""
  return jnp.transpose(padded[:, 1:-1, 1:-1], (1, 2, 0))


def _checked(image: jax.typing.ArrayLike, lam: jax.typing.ArrayLike, kappa: float,
             beta_max: float, name: str) -> jax.Array:
  """The (H, W, C) image as a float32-or-wider array, after `l0_smooth`'s argument checks."""
  if not (math.isfinite(kappa) and kappa > 1 and math.isfinite(beta_max)):
    raise ValueError(f"{name} needs a finite kappa > 1 and a finite beta_max, "
                     f"got kappa={kappa}, beta_max={beta_max}")
  image = checks.float_image(jnp.asarray(image), name)
  if (not isinstance(lam, jax.core.Tracer) and np.ndim(lam) == 0
      and not math.isfinite(float(lam))):
    raise ValueError(f"{name} needs a finite lam, got {lam}")
  return image.astype(jnp.promote_types(image.dtype, jnp.float32))


def l0_smooth(
    image: jax.typing.ArrayLike,
    *,
    lam: jax.typing.ArrayLike = 0.02,
    kappa: float = 2.0,
    beta_max: float = 1e5,
) -> jax.Array:
  """Smooths an image by ℓ0 gradient minimisation (Xu et al. 2011, Algorithm 1).

  Args:
    image: (H, W, C) float image, normally in [0, 1]; any C ≥ 1.
    lam: λ, weight of the gradient count against the summed squared error. May be a traced
      scalar (the loop is a `lax.while_loop`); λ ≤ 0 returns the input. A NaN or infinite
      number raises ValueError (a traced one cannot be checked and returns the input).
    kappa: β growth factor, > 1.
    beta_max: β stops growing once it reaches this value.

  Returns:
    (H, W, C) smoothed image (not clipped), float32 unless the input is float64.

  Raises:
    TypeError: the image is not floating point.
    ValueError: the image is not (H, W, C) or is empty, a concrete λ is NaN or infinite, or
      κ ≤ 1 or β_max is not finite (the loop would not end).
  """
  image = _checked(image, lam, kappa, beta_max, "l0_smooth")
  h, w, _ = image.shape
  lam = jnp.asarray(lam, image.dtype)
  planes, spectrum, padded = _start(image)
  h_image = hartley2(planes)

  def cond(carry):
    beta, _ = carry
    return (beta < beta_max) & (lam > 0)

  def body(carry):
    beta, padded = carry
    h_div = hartley2(_thresholded_divergence(padded, lam / beta))
    # The DC term of ∂ᵀ(h, v) is exactly zero; in float32 its rounding error times β (up to
    # 1e5) would shift the image mean, so it is set to zero.
    rhs = h_image + beta * h_div.at[:, 0, 0].set(0)
    return beta * kappa, _hartley2_wrapped(rhs / ((h * w) * (1.0 + beta * spectrum)))

  _, padded = jax.lax.while_loop(cond, body, (2 * lam, padded))
  return _result(padded)


@functools.partial(jax.jit, static_argnames=("kappa", "beta_max", "mesh"))
def l0_smooth_batch(images: jax.Array, *, lam: jax.typing.ArrayLike = 0.02, kappa: float = 2.0,
                    beta_max: float = 1e5, mesh: jax.sharding.Mesh | None = None) -> jax.Array:
  """`l0_smooth` of each image of a (B, H, W, C) batch, split over `mesh` (`sharding`).

  Jitted; through `sharding.batch_map`, so on CPU a device's share is solved image by image in
  one program: equal to one image at a time bit for bit, and 0.91–1.33× as fast per image at
  batches 2 and 4 (512×384, 2 cores), where `jax.vmap` (larger FFTs over the whole batch)
  took 0.76–0.86× at batch 4 (`benchmarks.throughput`). It compiles once per image of a
  device's share.
  """
  checks.float_image(images, "l0_smooth_batch", ndim=4)
  if jnp.ndim(lam) != 0:
    raise ValueError(f"l0_smooth_batch takes one scalar lam, got shape {jnp.shape(lam)} "
                     "(for a λ per image, jax.vmap l0_smooth)")

  def smooth(x, lam):
    return l0_smooth(x, lam=lam, kappa=kappa, beta_max=beta_max)

  return sharding.batch_map(smooth, mesh, (0, None))(images, lam)


# The host solve (`l0_smooth_host`). XLA's CPU FFT splits a transform over both cores only when
# it runs on the thread that called the program (README "The ℓ0 solve on both cores"), and a
# program moves off that thread at its first instruction that XLA splits over its thread pool
# or runs beside another. XLA leaves an in-place dynamic-update-slice (DUS) unsplit, so the
# loop below writes every large array into a buffer it carries, as DUS pieces; its buffers come
# donated from a setup program, so that only the image's transform (an FFT and more DUS
# pieces) runs before the loop. The DUS starts are offset by a traced zero so that XLA keeps
# them as updates.


_Put = Callable[[jax.Array, jax.Array, tuple[int, ...]], jax.Array]


def _writer(zero: jax.Array) -> _Put:
  """put(buf, piece, start): buf with `piece` written in place at `start` (a DUS).

  Each call offsets its start by its own multiple of the traced zero, so that no two updates
  share a start computation. XLA computes a shared one as a scalar instruction of its own, and
  when more than a few of those are ready at once it runs some on its thread pool, from where
  the loop may go on with its next FFT on one thread, which rounds differently (seen in an
  early version of the bands, where repeated calls at 640×480 disagreed).
  """
  count = itertools.count(1)

  def put(buf: jax.Array, piece: jax.Array, start: tuple[int, ...]) -> jax.Array:
    k = next(count)
    return jax.lax.dynamic_update_slice(buf, piece, tuple(zero * k + i for i in start))

  return put


def _put_all(buf: jax.Array, planes: jax.Array, put: _Put) -> jax.Array:
  """buf (C, H, W) overwritten by planes of its shape, as two pieces (a DUS of the whole array
  is simplified into the planes themselves)."""
  h = planes.shape[-2]
  buf = put(buf, planes[:, :h - 1], (0, 0, 0))
  return put(buf, planes[:, h - 1:], (0, h - 1, 0))


# Spectra up to this size stay one band in `_hartley_bands` (a core's cache here is 2 MiB).
_CACHE_BYTES = 1 << 20


def _hartley_bands(f: jax.Array, w: int,
                   cache_bytes: int = _CACHE_BYTES) -> list[tuple[int, int, jax.Array]]:
  """𝓗 of real (C, H, W) planes from their `rfft2` f (C, H, W//2 + 1), as (row, column, piece).

  Each band of about 60 rows k of f gives 𝓗's rows k at columns < W/2 + 1 (Re − Im) and its
  rows −k at the other columns (Re + Im, mirrored, `_halves`), so that the band is read twice
  while it is still in cache. Whole halves (each reading the whole spectrum) took 1.03–1.06×
  the solve's time with 60-row bands at 640×480 and 1280×720 (in-process A/B); bands of 30 to
  120 rows did about as well, and the loop compiles in 0.7 s at 640×480 with 60 (30 rows:
  1.2 s; one band: 0.3 s).
  """
  h, half = f.shape[-2:]
  # A spectrum of up to `cache_bytes` is read twice from a core's cache (2 MiB here) anyway
  # (one band at 320×240 took the time of 4 or 8), and each band costs tracing and compiling.
  fits = f.size * f.dtype.itemsize <= cache_bytes
  bands = 1 if fits else max(1, round(h / 60))
  edges = [round(i * h / bands) for i in range(bands + 1)]
  pieces = []
  for a, b in zip(edges[:-1], edges[1:], strict=True):
    g = f[:, a:b]
    pieces.append((a, 0, g.real - g.imag))
    # Rows k ≥ 1 land on rows H − k, a block; row 0 lands on itself.
    for a2, b2 in ([(0, 1), (1, b)] if a == 0 else [(a, b)]):
      if b2 > a2 and w > half:
        g = f[:, a2:b2, 1:w - half + 1]
        pieces.append(((h - b2 + 1) % h, half, jnp.flip(g.real + g.imag, (-2, -1))))
  return pieces


def _hartley_row(f: jax.Array, w: int, k: int) -> list[tuple[int, jax.Array]]:
  """Row k of 𝓗 from `rfft2` f as (column, piece (C, 1, ·)), one piece per half."""
  h, half = f.shape[-2:]
  g = f[:, k:k + 1]
  pieces = [(0, g.real - g.imag)]
  if w > half:
    g = f[:, (h - k) % h:(h - k) % h + 1, 1:w - half + 1]
    pieces.append((half, jnp.flip(g.real + g.imag, -1)))
  return pieces


def _host_setup(image: jax.Array) -> tuple[jax.Array, ...]:
  """`_host_loop`'s arguments after λ for an (H, W, C) image: the spectrum, the wrap-padded
  planes, the planes, and scratch buffers for the mask, the denominator and 𝓗(planes)."""
  h, w, c = image.shape
  planes, spectrum, padded = _start(image)
  return (spectrum, padded, planes, jnp.zeros((h + 2, w + 2), image.dtype),
          jnp.zeros((h + 1, w), image.dtype), jnp.zeros((c, h, w), image.dtype))


def _host_loop(lam: jax.Array, spectrum: jax.Array, padded: jax.Array, planes_buf: jax.Array,
               keep_buf: jax.Array, inv_buf: jax.Array, h_image: jax.Array, *, kappa: float,
               beta_max: float,
               cache_bytes: int = _CACHE_BYTES) -> tuple[jax.Array, list[jax.Array]]:
  """`l0_smooth`'s loop on `_host_setup`'s buffers → ((H, W, C) result, the buffers).

  Starts with the planes' Hartley transform, written into `h_image`: its FFT is the program's
  first instruction, so it runs on the calling thread, split (after the setup's transposes it
  ran on one thread: 1.87 ms at 640×480 in a trace, against 1.06–1.21 ms for a split one).
  """
  c, h, w = planes_buf.shape
  half = w // 2 + 1
  # A zero XLA cannot see through; `l0_smooth_host` has checked λ finite (a NaN would give 1:
  # the pieces would land clamped, and the loop would not run).
  put = _writer((lam != lam).astype(jnp.int32))
  for r0, c0, piece in _hartley_bands(jnp.fft.rfft2(planes_buf), w, cache_bytes):
    h_image = put(h_image, piece, (0, r0, c0))

  def divide(numerator, d):
    # XLA computes `l0_smooth`'s division by the (H, W) denominator as a division for one
    # plane and as its reciprocal times the numerator for several; the same here, so that
    # the two solves round alike (`d` is whichever `inv_buf` holds).
    return numerator / d if c == 1 else numerator * d

  def cond(carry):
    return (carry[0] < beta_max) & (lam > 0)

  def body(carry):
    beta, p, planes_buf, keep_buf, inv_buf = carry
    put = _writer((beta < 0).astype(jnp.int32))
    # As `_thresholded_divergence`; the mask's differences are negated (the same squares) so
    # that XLA does not share them with the divergence's through a split fusion.
    nh, nv = p[:, :-1, :-1] - p[:, :-1, 1:], p[:, :-1, :-1] - p[:, 1:, :-1]
    keep = (jnp.sum(nh * nh + nv * nv, axis=0) >= lam / beta).astype(p.dtype)
    keep_buf = put(keep_buf, keep, (0, 0))
    keep = keep_buf[:h + 1, :w + 1]
    gh = (p[:, :-1, 1:] - p[:, :-1, :-1]) * keep
    gv = (p[:, 1:, :-1] - p[:, :-1, :-1]) * keep
    div_buf = _put_all(planes_buf,
                       (gh[:, 1:, :-1] - gh[:, 1:, 1:]) + (gv[:, :-1, 1:] - gv[:, 1:, 1:]), put)
    # HW (1 + β |F(∂)|²), or its reciprocal (`divide`).
    scale = (h * w) * (1.0 + beta * spectrum)
    inv_buf = put(inv_buf, scale if c == 1 else 1.0 / scale, (0, 0))
    inv = inv_buf[:h]
    # rhs = (𝓗(I) + β 𝓗(div)) / (HW (1 + β |F(∂)|²)); it overwrites the divergence, which its
    # transform has read.
    rhs_buf = div_buf
    for r0, c0, piece in _hartley_bands(jnp.fft.rfft2(div_buf), w, cache_bytes):
      rows, cols = slice(r0, r0 + piece.shape[-2]), slice(c0, c0 + piece.shape[-1])
      rhs_buf = put(rhs_buf, divide(h_image[:, rows, cols] + beta * piece, inv[rows, cols]),
                    (0, r0, c0))
    # The DC term of 𝓗(div) set to zero, as in `l0_smooth`.
    rhs_buf = put(rhs_buf, divide(h_image[:, :1, :1], inv[:1, :1]), (0, 0, 0))
    # p = `_hartley2_wrapped`(rhs): 𝓗 inside, its last row and column above and left of it,
    # its first row and column below and right. Each piece comes from its own part of the
    # spectrum (pieces that share an array make XLA write it out, split).
    f = jnp.fft.rfft2(rhs_buf)
    for r0, c0, piece in _hartley_bands(f, w, cache_bytes):
      p = put(p, piece, (0, r0 + 1, c0 + 1))
    for k, row in ((h - 1, 0), (0, h + 1)):
      for c0, piece in _hartley_row(f, w, k):
        p = put(p, piece, (0, row, c0 + 1))

    def column(k):
      g = f[..., k:k + 1] if k < half else f[..., w - k:w - k + 1]
      return _wrap_rows(g.real - g.imag if k < half else _negated_rows(g.real + g.imag))

    p = put(p, column(w - 1), (0, 0, 0))
    p = put(p, column(0), (0, 0, w + 1))
    return beta * kappa, p, rhs_buf, keep_buf, inv_buf

  _, *buffers = jax.lax.while_loop(cond, body, (2 * lam, padded, planes_buf, keep_buf, inv_buf))
  # The buffers are returned so that they can alias the donated inputs: without that XLA
  # copies them before the loop, two copies at once, and the loop starts on a pool thread.
  return _result(buffers[0]), [*buffers, h_image]


_host_setup_jit = jax.jit(_host_setup)
_host_loop_jit = jax.jit(_host_loop, static_argnames=("kappa", "beta_max", "cache_bytes"),
                         donate_argnums=(2, 3, 4, 5, 6),
                         compiler_options={"xla_cpu_multi_thread_eigen": True})


def l0_smooth_host(image: jax.typing.ArrayLike, *, lam: jax.typing.ArrayLike = 0.02,
                   kappa: float = 2.0, beta_max: float = 1e5) -> jax.Array:
  """`l0_smooth` for a caller on the host, with its FFTs split over all cores.

  Two jitted programs, setup and then the loop on donated buffers. The loop runs on the thread
  that runs the program (the caller's, or with JAX's asynchronous CPU dispatch a worker
  thread of JAX's), where XLA's FFT may use its whole thread pool; the library's `xla_flags`
  item 2 turns that off elsewhere. On 2 cores it took 0.72× the time of jitted `l0_smooth` at
  640×480 and 0.73× at 1280×720, 0.77–0.85× at 512×384 and 0.99× at 320×240 (README "The ℓ0
  host solve in bands"). The result is the same on every call. It equals `l0_smooth`'s bit for
  bit where the FFTs stay on one thread (small images) and differs by rounding elsewhere, which
  moves a few pixels across the threshold (up to 9.7e-3 at 640×480, 2.3e-2 at 512×384). Same
  arguments, checks and errors as `l0_smooth`. Returns an (H, W, C) array. Under `jit` or
  `vmap` (a traced image or λ) it is `l0_smooth`.
  """
  if isinstance(image, jax.core.Tracer) or isinstance(lam, jax.core.Tracer):
    return l0_smooth(image, lam=lam, kappa=kappa, beta_max=beta_max)
  image = _checked(image, lam, kappa, beta_max, "l0_smooth_host")
  lam = jnp.asarray(lam, image.dtype)
  out, _ = _host_loop_jit(lam, *_host_setup_jit(image), kappa=kappa, beta_max=beta_max)
  return out


def l0_smooth_each(images: jax.typing.ArrayLike, *, lam: float = 0.02, kappa: float = 2.0,
                   beta_max: float = 1e5, mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """`l0_smooth` of each image of a (B, H, W, C) batch → (B, H, W, C) NumPy array, on the host.

  With a mesh (`sharding.mesh_of` the batch), `l0_smooth_batch` over its devices. Without,
  `l0_smooth_host` for each image, from one thread per core: XLA runs the solves of one
  program one after the other (`l0_smooth_batch` on CPU) but calls from several threads at
  once. On one device an image's result does not depend on the batch it comes in (with a mesh
  it is `l0_smooth_batch`'s, which rounds as `l0_smooth`). 512×384, 2 cores: 14.6–14.8 /
  20.1–20.3 / 21.0–21.6 images/s at batches 1 / 2 / 4 (`benchmarks.throughput`); in the
  release before, in one process, 17.0 / 20.5 / 20.4 against 13.3 / 23.2 / 23.4 with jitted
  `l0_smooth` calls (FFTs on one thread): the batch of one gains, larger batches lose 12–13%
  (README "The ℓ0 solve on both cores"). Not for use under `jit`. Raises TypeError or
  ValueError on a batch that is not float (B, H, W, C), or a NumPy batch that holds NaN or
  infinite values (`checks`).
  """
  if isinstance(images, np.ndarray):
    checks.finite(images, "l0_smooth_each")
  if mesh is not None:
    return np.asarray(l0_smooth_batch(images, lam=lam, kappa=kappa, beta_max=beta_max,
                                      mesh=mesh))
  images = checks.float_image(np.asarray(images), "l0_smooth_each", ndim=4)
  out = [None] * len(images)

  def solve(b):
    out[b] = np.asarray(l0_smooth_host(images[b], lam=lam, kappa=kappa, beta_max=beta_max))

  sharding.each_on_cores(solve, range(len(images)))
  return np.stack(out) if out else np.empty(images.shape, np.float32)


def l0_prox(
    x: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    *,
    kappa: float = 2.0,
    beta_max: float = 1e5,
) -> jax.Array:
  """ℓ0 proximal step  v ≈ argmin_v weight·C(v) + ‖v − x‖²  by `l0_smooth`.

  ADMM's v-update argmin_v λ C(v) + (β/2)‖v − x‖² is this with weight = 2λ/β.

  Args:
    x: (H, W, C) float image.
    weight: the factor of C(v) when the quadratic term has factor 1 (sums over all pixels
      and channels, intensities in [0, 1]).
    kappa: β growth factor of the inner solver.
    beta_max: final β of the inner solver.

  Returns:
    (H, W, C) piecewise-constant approximation of x, float32 unless x is float64.
  """
  return l0_smooth(x, lam=weight, kappa=kappa, beta_max=beta_max)
