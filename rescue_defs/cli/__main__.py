"""`python -m rescue_defs.cli`: the `rescue` console script."""

from rescue_defs.console_script import run

run()
