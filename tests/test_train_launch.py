"""`launch.train` and `launch.run --method=fan2018`: files written, resume, clean errors."""

import json

import numpy as np
import pytest
from PIL import Image
from test_launch import _blocks, _launch, _launch_cases, _save

TINY = ["--method=fan2018", "--crop_size=16", "--train_batch=2", "--fan_channels=4",
        "--fan_blocks=1"]


def _data(tmp_path):
  for s in range(3):
    _save(str(tmp_path / "data" / f"img{s}.png"), _blocks(s, 10)[1])
  _save(str(tmp_path / "data" / "sub" / "grey.png"), _blocks(9, 10)[1][..., 0])


def test_train_writes_model_and_log_resumes_and_the_model_runs(tmp_path):
  _data(tmp_path)
  common = [*TINY, "--data_dir=data", "--output=m/model.msgpack", "--checkpoint_dir=ck",
            "--checkpoint_every=2"]
  proc = _launch("launch.train", *common, "--num_steps=2", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "4 image(s)" in proc.stdout and "trained 2 steps" in proc.stdout
  log = json.loads((tmp_path / "m" / "model_log.json").read_text())
  assert [e["step"] for e in log["log"]] == [1, 2]
  assert sorted(log["images"]) == ["img0.png", "img1.png", "img2.png", "sub/grey.png"]
  # Resume: two more steps continue the log where the checkpoint left it.
  proc = _launch("launch.train", *common, "--num_steps=4", "--resume", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "resuming from step 2" in proc.stdout
  log = json.loads((tmp_path / "m" / "model_log.json").read_text())
  assert [e["step"] for e in log["log"]] == [1, 2, 3, 4] and log["steps"] == 4
  # Other settings than the checkpoint's are refused.
  proc = _launch("launch.train", *common, "--num_steps=6", "--resume", "--lr=0.01",
                 cwd=tmp_path)
  assert proc.returncode == 2 and "other settings" in proc.stderr
  proc = _launch("launch.run", "--method=fan2018", "--model=m/model.msgpack",
                 "--image=data/img0.png", "--output=out.png", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert np.asarray(Image.open(tmp_path / "out.png")).shape == (32, 40, 3)


BAD_INPUT = [
    (["--method=l0", "--data_dir=data"], "only fan2018 is trained"),
    (["--method=fan2018"], "give one of --data_dir or --tfds"),
    (["--method=fan2018", "--data_dir=nowhere"], "nowhere: not a folder"),
    (["--data_dir=nowhere"], "nowhere: not a folder"),  # fan2018 without --method
    (["--method=fan2018", "--data_dir=data", "--crop_size=64"], "no training image is at"),
    (["--method=fan2018", "--data_dir=data", "--lr=nan"], "--lr"),
    (["--method=fan2018", "--data_dir=data", "--lambda_e=-1"], "--lambda_e"),
    (["--method=fan2018", "--data_dir=data", "--resume"], "--resume needs --checkpoint_dir"),
    (["--method=fan2018", "--data_dir=data", "--energy=nope"], "--energy"),
    (["--method=fan2018", "--data_dir=data", "--output=exists.msgpack"], "already exists"),
    # Checked before training, not when the model is written at its end:
    (["--method=fan2018", "--data_dir=data", "--output=blocker/m.msgpack"], "blocker is a file"),
    (["--method=fan2018", "--data_dir=data", "--output=m.msgpack"], "m_log.json: already exists"),
]


def test_train_bad_input_is_one_line_and_exit_2(tmp_path):
  _data(tmp_path)
  (tmp_path / "exists.msgpack").write_bytes(b"keep")
  (tmp_path / "blocker").write_text("a file where a folder should be\n")
  (tmp_path / "m_log.json").write_text("the user's own log\n")
  results = _launch_cases("launch.train", [args for args, _ in BAD_INPUT], cwd=tmp_path)
  for (args, message), result in zip(BAD_INPUT, results, strict=True):
    assert result["code"] == 2, result
    assert message in result["stderr"] and "Traceback" not in result["stderr"], result
    assert len(result["stderr"].strip().splitlines()) == 1, result
  assert (tmp_path / "exists.msgpack").read_bytes() == b"keep"
  assert not (tmp_path / "m.msgpack").exists()


def test_run_fan2018_refuses_a_file_that_is_not_a_model(tmp_path):
  (tmp_path / "bad.msgpack").write_bytes(b"garbage")
  proc = _launch("launch.run", "--method=fan2018", "--model=bad.msgpack", "--output=o.png",
                 cwd=tmp_path)
  assert proc.returncode == 2 and "not a fan2018 model" in proc.stderr
  proc = _launch("launch.run", "--method=fan2018", "--model=none.msgpack", "--output=o.png",
                 cwd=tmp_path)
  assert proc.returncode == 2 and "none.msgpack: cannot read model" in proc.stderr
  assert not (tmp_path / "o.png").exists()


def test_tfds_without_the_package_is_a_clean_error(tmp_path):
  try:
    import tensorflow_datasets  # noqa: F401
    pytest.skip("tensorflow-datasets is installed")
  except ImportError:
    pass
  proc = _launch("launch.train", "--method=fan2018", "--tfds=bsds300", cwd=tmp_path)
  assert proc.returncode == 2 and "needs tensorflow-datasets" in proc.stderr
