"""Times the ℓ0 solvers (FFT, Region Fusion, and OpenCV's l0Smooth when installed).

`jax s` is `l0_fft.l0_smooth_host`, the FFT solve the launchers run; `jit s` is `l0_smooth`
jitted on its own, as inside a user's program (its FFTs on one thread).

  python -m benchmarks.l0_benchmark [--repeats=5] [--json=results/l0_benchmark.json]

Compile time is reported apart from run time; run times are medians of --repeats calls.
"""

from absl import app, flags

from benchmarks import measure, timing
from launch import cli

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per size (the median is reported).",
                                lower_bound=1)
_LAMBDA = flags.DEFINE_float("lambda_", 0.02, "λ of the solvers.")
_KAPPA = flags.DEFINE_float("kappa", 2.0, "κ of the FFT solvers.")
_PASSES = flags.DEFINE_integer("num_passes", 100, "Region Fusion passes K.", lower_bound=1)
_JSON = flags.DEFINE_string("json", "results/l0_benchmark.json", "Where to write the results.")
SIZES = ((320, 240), (512, 384), (640, 480), (1280, 720))


def run():
  timing.check_l0(_LAMBDA.value, _KAPPA.value)
  timing.check_outputs(_JSON.value)
  try:
    import cv2
    cv2.setNumThreads(-1)  # its default thread count, all cores as XLA (0 would be one)
    opencv, opencv_version = cv2.ximgproc.l0Smooth, cv2.__version__
    print(f"OpenCV {opencv_version}, {cv2.getNumThreads()} threads")
  except (ImportError, AttributeError):
    opencv = opencv_version = None
    print("OpenCV contrib not installed (pip install -e .[bench]): timing JAX only")
  lam, kappa = _LAMBDA.value, _KAPPA.value
  rows = []
  print(f"{'size':>10} {'compile s':>10} {'jax s':>8} {'jit s':>8} {'rf s':>8} {'opencv s':>9} "
        f"{'jax/opencv':>10}")
  for w, h in SIZES:
    image = timing.test_image(w, h)
    fft = measure.l0_fft_solve(image, lam=lam, kappa=kappa, repeats=_REPEATS.value)
    compile_s, jax_s = fft["compile_s"], fft["solve_s"]
    rf_s = measure.region_fusion_solve(image, lam=lam, num_passes=_PASSES.value,
                                       repeats=_REPEATS.value)["solve_s"]
    row = {"width": w, "height": h, "compile_s": compile_s, "jax_s": jax_s,
           "jit_s": fft["jit_solve_s"], "region_fusion_s": rf_s}
    if opencv is not None:
      image8 = (image * 255).round().astype("uint8")
      row["opencv_s"] = timing.median_seconds(
          lambda: opencv(image8, lambda_=lam, kappa=kappa), _REPEATS.value)  # noqa: B023
      row["ratio"] = jax_s / row["opencv_s"]
    rows.append(row)
    ocv = f"{row['opencv_s']:9.3f} {row['ratio']:10.2f}" if opencv is not None else ""
    print(f"{w:>5}×{h:<4} {compile_s:10.2f} {jax_s:8.3f} {row['jit_s']:8.3f} {rf_s:8.3f} {ocv}")
  timing.write_json(_JSON.value, {"machine": timing.machine(), "lambda": lam, "kappa": kappa,
                                  "num_passes": _PASSES.value, "repeats": _REPEATS.value,
                                  "opencv": opencv_version, "rows": rows})


if __name__ == "__main__":
  app.run(cli.main(run), flags_parser=cli.parse_flags)
