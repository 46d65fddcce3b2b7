"""The version, in a module of its own: anything may import it without importing the package's
public surface (which imports nearly everything)."""

__version__ = "0.1.0"
