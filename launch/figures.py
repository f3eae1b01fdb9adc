"""Figures for runs and benchmarks: image panels, detail layers, convergence curves, PSNR bars.

Pure plotting helpers: every function takes arrays or a run log and writes one PNG, atomically
(a temporary file in the destination folder, then `os.replace`), creating the folder if needed.
Figures are `matplotlib.figure.Figure` objects drawn with the Agg canvas, so no pyplot state, no
display and no backend switch is involved.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dipl0_jax import image_io

DPI = 120
PANEL_HEIGHT = 3.0  # inches per row of images
_TITLE_HEIGHT = 0.4  # inches per row kept for the panel titles
_OBJECTIVES = ("lagrangian", "data", "inner_loss", "loss")


def _save(fig: Figure, path: str) -> None:
  """Writes `fig` to `path` as a PNG via a temporary file, so readers never see half a file."""
  with image_io.atomic_file(path) as f:
    FigureCanvasAgg(fig).print_png(f)


def _check_image(title: str, image: np.ndarray) -> np.ndarray:
  """The (H, W, C) image clipped to [0, 1]; ValueError unless C is 1 or 3."""
  image = np.asarray(image, dtype=np.float32)
  if image.ndim != 3 or image.shape[-1] not in (1, 3) or 0 in image.shape:
    raise ValueError(f"panel {title!r}: expected an (H, W, 1) or (H, W, 3) image, "
                     f"got shape {image.shape}")
  return np.clip(image, 0.0, 1.0)


def _image_grid(path: str, rows: list[tuple[str, list[tuple[str, np.ndarray]]]]) -> None:
  """Draws rows of titled images (row label on the left unless it is empty) and saves them."""
  if not rows or not rows[0][1]:
    raise ValueError("nothing to draw: no rows or no panels")
  num_cols = len(rows[0][1])
  for label, panels in rows:
    if len(panels) != num_cols:
      raise ValueError(f"row {label!r} has {len(panels)} panels, the first row {num_cols}")
  images = [[_check_image(t, im) for t, im in panels] for _, panels in rows]
  # Each column is as wide as its widest image at PANEL_HEIGHT, so no image is squeezed.
  aspects = [max(row[c].shape[1] / row[c].shape[0] for row in images) for c in range(num_cols)]
  label_width = 0.4 if any(label for label, _ in rows) else 0.0
  fig = Figure(figsize=(label_width + PANEL_HEIGHT * sum(aspects),
                        len(rows) * (PANEL_HEIGHT + _TITLE_HEIGHT)),
               dpi=DPI, layout="constrained")
  axes = fig.subplots(len(rows), num_cols, squeeze=False,
                      gridspec_kw={"width_ratios": aspects})
  for r, (label, panels) in enumerate(rows):
    for c, (title, _) in enumerate(panels):
      ax, image = axes[r, c], images[r][c]
      if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
      else:
        ax.imshow(image)
      ax.set_title(title, fontsize=10)
      # Ticks off but the frame kept (not axis("off")), so the row label stays visible.
      ax.set_xticks([])
      ax.set_yticks([])
    if label:
      axes[r, 0].set_ylabel(label, fontsize=11)
  _save(fig, path)


def side_by_side(path: str, panels: list[tuple[str, np.ndarray]]) -> None:
  """Draws one row of titled images: (H, W, C) floats, C = 1 (grey) or 3, clipped to [0, 1].

  The figure is PANEL_HEIGHT inches tall (plus titles) and as wide as the panels at that height.

  Raises:
    ValueError: no panels, or an image that is not (H, W, 1) or (H, W, 3).
  """
  _image_grid(path, [("", panels)])


def results_grid(path: str, rows: list[tuple[str, list[tuple[str, np.ndarray]]]]) -> None:
  """Draws a grid of (H, W, C) images in [0, 1]: one row per (image name, panels) pair.

  Each row is labelled with its image name; its (title, image) panels are the columns (e.g.
  input, ground truth, method outputs). Images follow the rules of `side_by_side`.

  Raises:
    ValueError: no rows, rows with different numbers of panels, or a malformed image.
  """
  _image_grid(path, rows)


def detail_layer(image: np.ndarray, smooth: np.ndarray) -> np.ndarray:
  """The detail layer image − smooth of two (H, W, C) images, mapped to [0, 1] for display.

  The mapping is clip(0.5 + (image − smooth), 0, 1): mid-grey means no detail, brighter means
  the smoothing removed something lighter than its surroundings, darker the opposite.
  Differences beyond ±0.5 are clipped.

  Raises:
    ValueError: the shapes differ.
  """
  image, smooth = np.asarray(image), np.asarray(smooth)
  if image.shape != smooth.shape:
    raise ValueError(f"detail_layer: image {image.shape} and smooth {smooth.shape} differ")
  return np.clip(0.5 + (image - smooth), 0.0, 1.0)


def _series(entries: list[dict], key: str) -> np.ndarray | None:
  """The (N,) float values of `key` in the entries, NaN where absent; None if never present."""
  if not any(key in e for e in entries):
    return None
  values = np.array([e.get(key, np.nan) for e in entries], dtype=np.float64)
  # Non-finite values (e.g. a diverged run's inf) would wreck the axis limits: show gaps.
  values[~np.isfinite(values)] = np.nan
  return values


def _log_scale_if_positive(ax, values: list[np.ndarray]) -> None:
  """Log y-axis, unless some value is ≤ 0 (a log axis would silently drop it)."""
  finite = np.concatenate([v[np.isfinite(v)] for v in values])
  if np.any(finite <= 0):
    ax.set_ylabel(ax.get_ylabel() + " (linear: values ≤ 0)")
  else:
    ax.set_yscale("log")


def convergence_plot(path: str, log: dict) -> None:
  """Draws a run log's metrics against iteration: objectives, primal residual, PSNR (dB).

  `log` is a run log as written by `launch.run` (`{"method": ..., "settings": ..., "log":
  [{"iteration": 1, "lagrangian": ..., ...}, ...]}`). Panels, left to right, for what the
  entries hold: "lagrangian" / "data" / "inner_loss" / "loss" on a log axis, "primal_residual"
  on a log axis, "psnr". A key missing from some entries leaves a gap.

  Raises:
    ValueError: the log has no entries, or no metric besides the iteration.
  """
  entries = log.get("log") or []
  method = log.get("method", "unknown method")
  if not entries:
    raise ValueError(f"convergence_plot: the {method} log has no entries")
  iterations = np.array([e["iteration"] for e in entries], dtype=np.float64)
  objectives = {k: v for k in _OBJECTIVES if (v := _series(entries, k)) is not None}
  residual = _series(entries, "primal_residual")
  psnr = _series(entries, "psnr")
  panels = [p for p in (objectives, residual, psnr) if p is not None and len(p)]
  if not panels:
    raise ValueError(f"convergence_plot: the {method} log has no metrics to plot "
                     f"(keys: {sorted(entries[0])})")
  fig = Figure(figsize=(4.5 * len(panels), 3.5), dpi=DPI, layout="constrained")
  axes = iter(fig.subplots(1, len(panels), squeeze=False)[0])
  # Markers keep short logs (a few chunks) readable; on long ones they would blur the line.
  style = {"marker": "o", "markersize": 3} if len(entries) <= 50 else {}
  if objectives:
    ax = next(axes)
    for key, values in objectives.items():
      ax.plot(iterations, values, label=key, **style)
    ax.set_title("objective")
    ax.set_ylabel("value")
    _log_scale_if_positive(ax, list(objectives.values()))
    ax.legend(fontsize=9)
  if residual is not None:
    ax = next(axes)
    ax.plot(iterations, residual, color="tab:red", **style)
    ax.set_title("primal residual ‖v − f‖")
    ax.set_ylabel("residual")
    _log_scale_if_positive(ax, [residual])
  if psnr is not None:
    ax = next(axes)
    ax.plot(iterations, psnr, color="tab:green", **style)
    ax.set_title("PSNR")
    ax.set_ylabel("PSNR (dB)")
  for ax in fig.axes:
    ax.set_xlabel("iteration")
    ax.grid(True, which="major", alpha=0.3)
  fig.suptitle(method)
  _save(fig, path)


def psnr_chart(path: str, names: list[str], series: dict[str, list[float]]) -> None:
  """Draws grouped PSNR bars (dB, from 0): x = image names, one bar per series in each group.

  `series` maps a label (e.g. "input", "l0") to one PSNR per name, in the order of `names`;
  the legend shows each series' mean. The figure widens with the number of bars.

  Raises:
    ValueError: no names or series, a series of the wrong length, or a non-finite PSNR (e.g.
      the inf of an exact match), which a bar cannot show.
  """
  if not names or not series:
    raise ValueError("psnr_chart: no images or no series")
  for label, values in series.items():
    if len(values) != len(names):
      raise ValueError(f"psnr_chart: series {label!r} has {len(values)} values "
                       f"for {len(names)} images")
    if not np.all(np.isfinite(values)):
      raise ValueError(f"psnr_chart: series {label!r} has non-finite values")
  width = 0.8 / len(series)
  x = np.arange(len(names))
  fig = Figure(figsize=(max(6.0, 1.5 + len(names) * (0.25 + 0.15 * len(series))), 4.5),
               dpi=DPI, layout="constrained")
  ax = fig.subplots()
  for i, (label, values) in enumerate(series.items()):
    ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width,
           label=f"{label} (mean {np.mean(values):.2f} dB)")
  ax.set_xticks(x, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
  ax.set_xlim(-0.6, len(names) - 0.4)
  ax.set_ylabel("PSNR (dB)")
  ax.grid(True, axis="y", alpha=0.3)
  ax.set_axisbelow(True)
  # Above the axes, so the legend never hides a bar.
  ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(len(series), 4),
            frameon=False)
  _save(fig, path)
