"""The package version (its own module: the modules that record it never import the root)."""

__version__ = "0.1.0"
