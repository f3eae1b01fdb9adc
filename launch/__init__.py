"""Command-line entry points: `python -m launch.run`, `python -m launch.evaluate`."""

from launch import allocator

allocator.apply()
