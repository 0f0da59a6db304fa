"""dbt's global flags for the parts of dbt this process calls without dbt's CLI.

dbt's selector and its state comparison read two of dbt's global flags, which only dbt's CLI
sets. Making all of them imports that CLI (click, every command, the parser): 0.1-0.3 s, a
sixth of `rescue plan` on a 2,300-model manifest (bench/plan_bench.py). `DbtDefaultFlags` holds
the two, with dbt's defaults (tests/test_selection.py compares them with dbt's own); any other
flag is dbt's own default, made when first read. (dbt's profile loader reads two dozen more at
once, for its Jinja context: `rescue launch` still imports dbt's CLI to read the warehouse.)
"""

from argparse import Namespace
from functools import cache


class DbtDefaultFlags(Namespace):
    """dbt's flags as its CLI sets them when given nothing (plus any given as keywords)."""

    INDIRECT_SELECTION = "eager"  # the selector
    state_modified_compare_more_unrendered_values = False  # state:modified

    def __getattr__(self, name: str):  # only for a flag neither above nor given
        if name.startswith("__"):  # copy and pickle probing, not a flag
            raise AttributeError(name)
        return getattr(_dbt_cli_flags(), name)


@cache
def _dbt_cli_flags():
    from dbt.contracts.project import ProjectFlags
    from dbt.flags import get_flags, set_flags, set_from_args

    before = get_flags()
    set_from_args(Namespace(), ProjectFlags())  # sets them as dbt's global flags: put back
    made = get_flags()
    set_flags(before)  # what was set stays (ours, or dagster-dbt's)
    return made
