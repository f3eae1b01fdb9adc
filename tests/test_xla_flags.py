"""The XLA setting applied at import: added once, never over the user's choice, warned when late."""

import os

import pytest

from dipl0_jax import xla_flags


def test_import_switched_ynnpack_fusions_off_in_this_process():
  assert f"{xla_flags.FLAG}=" in os.environ["XLA_FLAGS"].split()


def test_adds_the_flag_and_keeps_other_flags(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  monkeypatch.setattr(xla_flags, "_backend_started", lambda: False)
  assert xla_flags.use_xla_convolutions()
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                             f"{xla_flags.FLAG}="]
  assert not xla_flags.use_xla_convolutions()  # already there: not added twice


def test_leaves_the_users_own_setting(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", f"{xla_flags.FLAG}=individual_dot")
  monkeypatch.setattr(xla_flags, "_backend_started", lambda: False)
  assert not xla_flags.use_xla_convolutions()
  assert os.environ["XLA_FLAGS"] == f"{xla_flags.FLAG}=individual_dot"


def test_warns_when_jax_has_already_started(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setattr(xla_flags, "_backend_started", lambda: True)
  with pytest.warns(UserWarning, match="imported after JAX started"):
    assert not xla_flags.use_xla_convolutions()
  assert "XLA_FLAGS" not in os.environ
