"""The README's "Using it from JAX" example runs as written."""

import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_jax_example_runs():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  section = readme.split("## Using it from JAX", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
  scope = {}
  exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
  assert scope["out"].shape == (4, 64, 64, 3)
  assert scope["result"].output.shape == (4, 64, 64, 3)
  assert scope["result"].v.shape == (4, 64, 64, 3)
  assert np.all(np.isfinite(np.asarray(scope["result"].output)))
