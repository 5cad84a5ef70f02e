"""The package version, in a leaf module: ``hrnet_fast/__init__.py``, the command line and ``export.py`` import
it from here (no module reaches back up to the package face for it), and ``pyproject.toml`` reads it from here
without importing anything."""

__version__ = "0.1.0"
