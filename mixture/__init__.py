"""The mixture DSL and its compiler."""

__version__ = "0.1.0"
