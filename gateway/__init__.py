"""Secure case-file exchange gateway between a bank and its collection agencies."""

from importlib.metadata import PackageNotFoundError, version

try:  # the installed distribution's, which setuptools-scm took from the git tag at build time
    __version__ = version("gateway")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
