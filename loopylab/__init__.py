"""loopylab: a robot that does science, and a market that pays for the data it cannot collect.

The packages live in the repository's top-level folders and install under this one namespace
(`loopylab.bus`, `loopylab.sim`, ...); see docs/design.md for what each owns and the arrows between them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loopylab")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"
