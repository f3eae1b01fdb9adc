"""Benchmarks: `python -m benchmarks.suite`, `benchmarks.torch_compare`, ..."""

from launch import huge_pages

huge_pages.restart()
