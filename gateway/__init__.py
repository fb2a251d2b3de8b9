"""Secure case-file exchange gateway between a bank and its collection agencies."""

__version__ = "0.1.0"
