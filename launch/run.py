"""Smooths one image: `python -m launch.run --method=l0 --image=IN --output=OUT.png`.

With no --image it smooths the picture the package ships. Prints the time and, with --gt,
PSNR/SSIM of the 8-bit output.
"""

import os

import jax
from absl import app, flags

from dipl0_jax import image_io, metrics
from launch import common

_IMAGE = flags.DEFINE_string("image", image_io.EXAMPLE_IMAGE, "Input image (PNG/JPEG/BMP/TIFF).")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Output PNG (default: results/<image name>_<method>.png).")
_GT = flags.DEFINE_string("gt", None, "Ground-truth image: print PSNR/SSIM against it.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")


def run() -> None:
  method = common.build_method()
  stem = os.path.splitext(os.path.basename(_IMAGE.value))[0]
  output = _OUTPUT.value or os.path.join("results", f"{stem}_{method.name}.png")
  if os.path.exists(output) and not _OVERWRITE.value:
    raise common.UsageError(f"{output}: already exists (pass --overwrite to replace it)")
  image = common.read(_IMAGE.value)
  gt = common.read(_GT.value) if _GT.value else None
  if gt is not None and gt.shape[:2] != image.shape[:2]:
    raise common.UsageError(
        f"{_GT.value}: ground truth is {gt.shape[1]}×{gt.shape[0]}, "
        f"input is {image.shape[1]}×{image.shape[0]}")
  settings = " ".join(f"{k}={v:g}" for k, v in method.settings.items())
  print(f"{method.name} ({settings}) on {_IMAGE.value} ({image.shape[1]}×{image.shape[0]}×"
        f"{image.shape[2]})")
  results, seconds = common.timed(method.smooth, image, jax.random.key(common.SEED.value))
  try:
    image_io.write_png(output, results["output"])
  except image_io.ImageError as e:
    raise common.UsageError(str(e)) from None
  print(f"time: {seconds:.3f} s (including compilation)")
  print(f"wrote {output}")
  if gt is not None:
    out8 = image_io.quantize(results["output"])
    gt3, out3 = (x if x.shape[-1] == out8.shape[-1] else x.repeat(3, -1)[..., :3]
                 for x in (gt, out8))
    print(f"PSNR: {float(metrics.psnr(out3, gt3)):.2f} dB  "
          f"SSIM: {float(metrics.ssim(out3, gt3)):.4f}")


def main(argv):
  if len(argv) > 1:
    common.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    run()
  except common.UsageError as e:
    common.fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
