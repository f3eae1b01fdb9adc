"""The XLA settings applied at import: added once, never over the user's choice, warned when
late; and what the FFT setting is for, repeatable FFTs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dipl0_jax
from dipl0_jax import xla_flags

ALL = [f"{name}={value}" for name, value in xla_flags.FLAGS.items()]


def test_import_applied_the_flags_in_this_process():
  for flag in ALL:
    assert flag in os.environ["XLA_FLAGS"].split()


def test_adds_the_flags_and_keeps_other_flags(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  monkeypatch.setattr(xla_flags, "_backend_started", lambda: False)
  assert xla_flags.apply() == ALL
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", *ALL]
  assert xla_flags.apply() == []  # already there: not added twice


def test_leaves_the_users_own_setting(monkeypatch):
  ynn, eigen = xla_flags.FLAGS
  monkeypatch.setenv("XLA_FLAGS", f"{ynn}=individual_dot")
  monkeypatch.setattr(xla_flags, "_backend_started", lambda: False)
  assert xla_flags.apply() == [f"{eigen}=false"]
  assert os.environ["XLA_FLAGS"] == f"{ynn}=individual_dot {eigen}=false"


def test_warns_when_jax_has_already_started(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setattr(xla_flags, "_backend_started", lambda: True)
  with pytest.warns(UserWarning, match="imported after JAX started"):
    assert xla_flags.apply() == []
  assert "XLA_FLAGS" not in os.environ


def test_ffts_and_l0_smooth_repeat_exactly_on_a_large_image():
  # At 640×480, with XLA's multi-threaded FFT, the real FFT of a computed (3, 480, 640) array
  # changed its rounding in 35 of 40 calls and the default ℓ0 solve its output in 6 of 20
  # (2 cores); the ℓ0 threshold turns rounding into visible differences.
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.random((480, 640, 3), dtype=np.float32))
  planes = jnp.transpose(image, (2, 0, 1))
  fft = jax.jit(lambda s: jnp.fft.rfft2(s * (jnp.sum(s * s, axis=0) > 1.0)))
  first = np.asarray(fft(planes))
  for _ in range(20):
    np.testing.assert_array_equal(np.asarray(fft(planes)), first)
  solve = jax.jit(lambda x: dipl0_jax.l0_smooth(x, lam=0.02))
  first = np.asarray(solve(image))
  for _ in range(4):
    np.testing.assert_array_equal(np.asarray(solve(image)), first)
