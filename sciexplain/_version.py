"""The version of the sciexplain core."""

__version__ = "0.1.0"
