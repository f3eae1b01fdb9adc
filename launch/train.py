"""Trains the Fan et al. 2018 smoother without labels:
`python -m launch.train --method=fan2018 --data_dir=FOLDER --output=model.msgpack`
(fan2018, the one method trained, is also the default here).

Random crops of the images in --data_dir (or of a TensorFlow Datasets split with --tfds, when
tensorflow-datasets is installed and the data is already on disk), Adam on the energy of the
chosen preset, a progress bar, a JSON log of the losses beside the model, orbax checkpoints
every --checkpoint_every steps with --resume, and Ctrl-C that stops after the current step
and writes the model so far. The model file is what `launch.run --method=fan2018 --model=`
reads.
"""

import dataclasses
import json
import os
import time

import jax
import numpy as np
import tqdm
from absl import app, flags

from dipl0_jax import checkpoint, fan_energy, fan_network, fan_training, image_io
from launch import common, datasets

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of training images (searched "
                                "recursively: PNG/JPEG/BMP/TIFF).")
_TFDS = flags.DEFINE_string("tfds", None, "Train on this TensorFlow Datasets name instead "
                            "(needs tensorflow-datasets and the data under --tfds_data_dir).")
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "TFDS data folder (default ~/"
                                     "tensorflow_datasets); nothing is downloaded.")
_TFDS_SPLIT = flags.DEFINE_string("tfds_split", "train", "TFDS split.")
_TFDS_LIMIT = flags.DEFINE_integer("tfds_limit", 500, "Most TFDS images held in memory.")
_ENERGY = flags.DEFINE_enum("energy", "smoothing", sorted(fan_energy.PRESETS),
                            "Energy preset of the paper: smoothing, texture (α=20, h=5) or "
                            "detail (α=15, c₁=∞, c₂=0).")
_LAMBDA_F = flags.DEFINE_float("lambda_f", None, "Weight of the flattening term (default: the "
                                "preset's, 0.03).")
_LAMBDA_E = flags.DEFINE_float("lambda_e", None, "Weight of the edge-preserving term (default: "
                               "the preset's, 0.1).")
_CROP = flags.DEFINE_integer("crop_size", 224, "Side of the random square training crops.")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 4, "Crops per Adam step.")
_STEPS = flags.DEFINE_integer("num_steps", 1000, "Adam steps in all (a resumed run counts "
                              "the steps already done).")
_FAN_CHANNELS = flags.DEFINE_integer("fan_channels", 64, "Channels of the network (paper: 64).")
_FAN_BLOCKS = flags.DEFINE_integer("fan_blocks", 10, "Residual blocks (paper: 10).")
_OUT = flags.DEFINE_string("output", "results/fan2018.msgpack", "Model file to write.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing model file.")
_CKPT_DIR = flags.DEFINE_string("checkpoint_dir", None, "Save the training state here.")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue from the newest checkpoint.")


def _rgb(image: np.ndarray) -> np.ndarray:
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def _folder_images(folder: str) -> tuple[list[np.ndarray], list[str]]:
  if not os.path.isdir(folder):
    raise common.UsageError(f"--data_dir={folder}: not a folder")
  paths = datasets.images_in(folder, recursive=True)
  return [_rgb(common.read(p)) for p in paths], [os.path.relpath(p, folder) for p in paths]


def _tfds_images(name: str) -> tuple[list[np.ndarray], list[str]]:
  try:
    import tensorflow_datasets as tfds  # optional: the `tfds` extra
  except ImportError:
    raise common.UsageError("--tfds needs tensorflow-datasets: pip install -e '.[tfds]'"
                            ) from None
  try:
    data = tfds.load(name, split=_TFDS_SPLIT.value, data_dir=_TFDS_DATA_DIR.value,
                     download=False, shuffle_files=False)
  except Exception as e:  # tfds raises many types for missing data; all mean the same here
    raise common.UsageError(f"--tfds={name}: cannot load split {_TFDS_SPLIT.value} from disk "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
  images = []
  for example in tfds.as_numpy(data.take(_TFDS_LIMIT.value)):
    pixels = example["image"] if isinstance(example, dict) else example[0]
    images.append(_rgb(pixels.astype(np.float32) / 255.0))
  return images, [f"{name}[{i}]" for i in range(len(images))]


def _crops(images: list[np.ndarray], size: int, count: int, seed: int, step: int) -> np.ndarray:
  """`count` random size×size crops, randomly mirrored; the same for the same (seed, step), so
  a resumed run sees the batches an uninterrupted one would."""
  rng = np.random.default_rng([seed, step])
  out = []
  for i in rng.integers(len(images), size=count):
    image = images[i]
    top = rng.integers(image.shape[0] - size + 1)
    left = rng.integers(image.shape[1] - size + 1)
    crop = image[top: top + size, left: left + size]
    out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
  return np.stack(out)


def _config() -> fan_training.FanTrainConfig:
  for name, value in (("crop_size", _CROP.value), ("train_batch", _TRAIN_BATCH.value),
                      ("num_steps", _STEPS.value), ("fan_channels", _FAN_CHANNELS.value),
                      ("checkpoint_every", _CKPT_EVERY.value)):
    if value < 1:
      raise common.UsageError(f"--{name}={value}: must be ≥ 1")
  if _FAN_BLOCKS.value < 0:
    raise common.UsageError(f"--fan_blocks={_FAN_BLOCKS.value}: must be ≥ 0")
  lr = fan_training.FanTrainConfig.lr if common.LR.value is None else common.LR.value
  common.check_positive("lr", lr)
  energy = fan_energy.PRESETS[_ENERGY.value]
  for name, flag in (("lambda_f", _LAMBDA_F), ("lambda_e", _LAMBDA_E)):
    if flag.value is not None:
      common.check_positive(name, flag.value, allow_equal=True)
      energy = dataclasses.replace(energy, **{name: flag.value})
  return fan_training.FanTrainConfig(
      net=fan_network.FanNetConfig(channels=_FAN_CHANNELS.value, blocks=_FAN_BLOCKS.value),
      energy=energy, lr=lr)


def _settings(config: fan_training.FanTrainConfig) -> dict:
  return {"energy": _ENERGY.value, "lambda_f": config.energy.lambda_f,
          "lambda_e": config.energy.lambda_e, "crop_size": _CROP.value,
          "train_batch": _TRAIN_BATCH.value,
          "lr": config.lr, "fan_channels": config.net.channels, "fan_blocks": config.net.blocks,
          "seed": common.SEED.value}


def _log_path() -> str:
  return os.path.splitext(_OUT.value)[0] + "_log.json"


def _write_model(state: fan_training.TrainState, config: fan_training.FanTrainConfig,
                 info: dict) -> list[str]:
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  log_path = _log_path()
  try:
    with image_io.atomic_file(_OUT.value) as f:
      fan_training.save_model(f, variables, config.net, info)
    with image_io.atomic_file(log_path, "w") as f:
      json.dump(info, f, indent=1)
  except OSError as e:
    raise common.UsageError(f"{_OUT.value}: cannot write ({e.strerror or e})") from None
  return [_OUT.value, log_path]


def run() -> None:
  # fan2018 is the one method trained, so --method may be left out here.
  if flags.FLAGS["method"].present and common.METHOD.value != "fan2018":
    raise common.UsageError(f"--method={common.METHOD.value}: only fan2018 is trained "
                            "(the other methods fit each image on its own)")
  if bool(_DATA_DIR.value) == bool(_TFDS.value):
    raise common.UsageError("give one of --data_dir or --tfds")
  if _RESUME.value and not _CKPT_DIR.value:
    raise common.UsageError("--resume needs --checkpoint_dir")
  # The model and its log are written after training: check them before it starts.
  common.check_outputs([_OUT.value, _log_path()], _OVERWRITE.value or _RESUME.value)
  config = _config()
  images, names = (_folder_images(_DATA_DIR.value) if _DATA_DIR.value
                   else _tfds_images(_TFDS.value))
  size = _CROP.value
  kept = [i for i, image in enumerate(images) if min(image.shape[:2]) >= size]
  if not kept:
    raise common.UsageError(f"no training image is at least {size}×{size} "
                            f"(found {len(images)}): lower --crop_size")
  if len(kept) < len(images):
    print(f"skipping {len(images) - len(kept)} image(s) smaller than {size}×{size}")
  images, names = [images[i] for i in kept], [names[i] for i in kept]

  state = fan_training.init(jax.random.key(common.SEED.value), config, size)
  settings, log = _settings(config), []
  if _RESUME.value:
    restored = checkpoint.restore(_CKPT_DIR.value, state)
    if restored is not None:
      state, meta = restored
      if meta["settings"] != json.loads(json.dumps(settings)):
        raise common.UsageError(f"{_CKPT_DIR.value}: checkpoint was made with other settings "
                                f"({meta['settings']})")
      log = meta["log"]
      print(f"resuming from step {int(state.step)} ({_CKPT_DIR.value})")
    else:
      print(f"no checkpoint in {_CKPT_DIR.value}: starting from the beginning")
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  print(f"fan2018: {num_params:,} parameters, energy={_ENERGY.value}, {len(images)} image(s), "
        f"{_TRAIN_BATCH.value}×{size}² crops, lr={config.lr:g}, {_STEPS.value} steps")

  start = time.perf_counter() - (log[-1]["seconds"] if log else 0.0)
  first = int(state.step)
  bar = tqdm.tqdm(total=_STEPS.value, initial=first, unit="step", disable=None)

  with common.stop_on_ctrl_c() as stop:
    for step in range(first, _STEPS.value):
      batch = _crops(images, size, _TRAIN_BATCH.value, common.SEED.value, step)
      state, terms = fan_training.train_step(state, batch, config)
      entry = {"step": step + 1, "seconds": round(time.perf_counter() - start, 2)}
      entry.update({k: round(float(v), 6) for k, v in terms.items()})
      if not all(np.isfinite(v) for v in terms.values()):
        raise common.UsageError(f"step {step + 1}: the loss is not finite ({entry}); "
                                "lower --lr")
      log.append(entry)
      bar.set_postfix(loss=f"{entry['loss']:.4g}", refresh=False)
      bar.update(1)
      if _CKPT_DIR.value and (step + 1) % _CKPT_EVERY.value == 0:
        checkpoint.save(_CKPT_DIR.value, step + 1, state,
                        {"settings": settings, "log": log})
      if stop:
        break
  bar.close()
  if _CKPT_DIR.value and int(state.step) % _CKPT_EVERY.value:
    checkpoint.save(_CKPT_DIR.value, int(state.step), state, {"settings": settings, "log": log})
  done = {"settings": settings, "images": names, "steps": int(state.step),
          "seconds": round(time.perf_counter() - start, 1), "log": log}
  status = " (stopped by Ctrl-C)" if stop else ""
  print(f"trained {done['steps']} steps in {done['seconds']:.1f} s{status}; "
        f"last loss {log[-1]['loss']:.4g}" if log else "no step trained")
  print("wrote " + ", ".join(_write_model(state, config, done)))


def main(argv: list[str] | None = None) -> None:
  """The command line: parses argv (default sys.argv), runs, exits (0, 2 on bad input)."""
  app.run(common.main(run), argv=argv, flags_parser=common.parse_flags)


if __name__ == "__main__":
  main()

