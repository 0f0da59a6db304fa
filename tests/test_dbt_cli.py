"""The dbt CLI resource asks no `dbt --version` of this environment's dbt (2 s of every run),
and still asks any other executable."""

import re
import subprocess
import sys
from pathlib import Path

from rescue_defs.assets.dbt_cli import executable_version


def test_this_environments_dbt_has_the_version_dbt_itself_prints():
    dbt = str(Path(sys.executable).absolute().parent / "dbt")
    printed = subprocess.check_output([dbt, "--version"]).decode()
    expected = re.search(r"installed:\s*(\d+\.\d+\.\d+)", printed).group(1)
    assert str(executable_version(dbt)) == expected


def test_a_dbt_of_another_environment_is_asked(tmp_path):
    other = tmp_path / "bin" / "dbt"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\necho 'dbt-fusion 2.0.0-preview.45'\n")
    other.chmod(0o755)
    assert str(executable_version(str(other))) == "2.0.0"
