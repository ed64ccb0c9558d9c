"""Shell completion scripts generated from the real ``safehome`` parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.installer.completion import bash_script, script, walk, zsh_script


def test_walk_finds_every_installer_command_and_choice() -> None:
    nodes = {n.path: n for n in walk(build_parser())}
    assert {"safehome site list", "safehome site apply", "safehome device test",
            "safehome import", "safehome label beds", "safehome status",
            "safehome commissioning export", "safehome completion"} <= set(nodes)  # fmt: skip
    assert "register" in nodes["safehome device"].subcommands
    assert nodes["safehome import"].positional_choices == ["locations", "beds", "residents"]
    assert nodes["safehome commissioning export"].choices["--format"] == ["csv", "pdf"]
    assert "--non-interactive" in nodes["safehome device test"].options


def _bash_complete(tmp_path: Path, words: list[str]) -> list[str]:
    """Run the generated bash function as bash would on <Tab> and return COMPREPLY."""
    script_path = tmp_path / "safehome.bash"
    script_path.write_text(bash_script(build_parser()))
    line = " ".join(words)
    arr = " ".join(f"'{w}'" for w in words)
    prog = (
        f"source {script_path}; COMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; "
        f'COMP_LINE="{line}"; _safehome_complete; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    done = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_script_completes_commands_options_and_choices(tmp_path: Path) -> None:
    assert "device" in _bash_complete(tmp_path, ["safehome", "dev"])
    assert _bash_complete(tmp_path, ["safehome", "device", "re"]) == ["register", "replace"]
    assert _bash_complete(tmp_path, ["safehome", "device", "ro"]) == ["rotate"]
    assert "--non-interactive" in _bash_complete(tmp_path, ["safehome", "device", "test", "--n"])
    assert _bash_complete(tmp_path, ["safehome", "commissioning", "export", "--format", ""]) == [
        "csv",
        "pdf",
    ]
    assert _bash_complete(tmp_path, ["safehome", "import", "r"]) == ["residents"]
    # An option's value in between does not lose the command path.
    assert "--watch" in _bash_complete(tmp_path, ["safehome", "status", "--bed", "B1", "--w"])


def test_zsh_script_shape() -> None:
    text = zsh_script(build_parser())
    assert text.startswith("#compdef safehome\n")
    assert '"safehome device") cands=(' in text
    assert "compdef _safehome safehome" in text


def test_unknown_shell() -> None:
    with pytest.raises(ValueError, match="bash, zsh"):
        script(build_parser(), "fish")


def test_completion_command_prints_the_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "completion", "bash"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "complete -o default -F _safehome_complete safehome" in done.stdout
    assert done.stdout == bash_script(build_parser())
