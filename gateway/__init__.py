"""Secure case-file exchange gateway between a bank and its collection agencies."""

import os
from importlib.metadata import PackageNotFoundError, version

# Pydantic looks for plugins in the entry points of every installed distribution the first
# time a model is built: ~30 ms of each start of a command or the daemon, for plugins the
# gateway does not use. An operator who wants one sets the variable themselves.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

try:  # the installed distribution's, which setuptools-scm took from the git tag at build time
    __version__ = version("gateway")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
