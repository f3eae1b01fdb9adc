"""Shared test set-up: a persistent compilation cache so re-runs skip XLA compiles, and
unoptimised machine code, since the tests compile many small programs and run each briefly
(measured on a 2-core CPU: a tiny DIP-ℓ0 solve's three programs compile in 14 s instead of 30,
and run as fast). Subprocesses the tests start inherit both through the environment."""

import os

import jax

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("DIPL0_TEST_CACHE", os.path.join(os.path.dirname(__file__), ".jax_cache")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
