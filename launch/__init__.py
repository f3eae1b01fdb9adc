"""Command-line entry points: `python -m launch.run`, `python -m launch.evaluate`."""

from launch import huge_pages

huge_pages.restart()
