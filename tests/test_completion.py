"""Shell completion as docs/cli.md documents it: click's _KMC_COMPLETE protocol."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kmcodec.cli import cli


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_source_scripts(shell):
    result = CliRunner().invoke(cli, [], prog_name="kmc", env={"_KMC_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0
    assert "_kmc_completion" in result.stdout and "_KMC_COMPLETE" in result.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("kmc comp", ["plain,compare"]),
        ("kmc encode --sch", ["plain,--scheduler"]),
        ("kmc compare --ht", ["plain,--html"]),
    ],
)
def test_bash_completes_commands_and_options(words, expected):
    env = {"_KMC_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = CliRunner().invoke(cli, [], prog_name="kmc", env=env)
    assert result.exit_code == 0
    assert result.stdout.split() == expected
