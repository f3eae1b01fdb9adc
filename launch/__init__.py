"""Command-line entry points: `python -m launch.run`, `python -m launch.evaluate`."""
