"""pytest wiring of the interop suite; the helpers live in support.py."""

from support import cli, home, procs, pytest_runtest_makereport  # noqa: F401
