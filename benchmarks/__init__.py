"""Benchmarks: `python -m benchmarks.suite`, `benchmarks.torch_compare`, ..."""

from launch import allocator

allocator.apply()
