"""Shared test set-up: a persistent compilation cache so re-runs skip XLA compiles."""

import os

import jax

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("DIPL0_TEST_CACHE", os.path.join(os.path.dirname(__file__), ".jax_cache")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
