"""`diversens COMMAND --help` is short: the common options (diversens.commands.options.COMMON),
by section, and a pointer to `--help-all`, which lists every option; what help shows never
changes what is parsed; docs/options.md is what the config dataclasses give now.

In process (no subprocess per command): the parsers are the CLI's own (`build_parser`), and the
help is printed at 80 columns, a terminal's width.
"""

import argparse
import re
from pathlib import Path

import pytest

from diversens import config
from diversens.cli import build_parser
from diversens.commands.options import COMMON, REGENERATE, markdown

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
HELPS = ("help", "help_all")  # -h/--help and --help-all: not counted as the command's options


def parsers() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


COMMANDS = sorted(parsers())


@pytest.fixture(autouse=True)
def _columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps help at the terminal's width


def help_of(command: str, flag: str, capsys) -> str:
    """What `diversens COMMAND FLAG` prints (and it exits 0)."""
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, flag])
    assert done.value.code == 0
    return capsys.readouterr().out


def flags_in(text: str) -> set[str]:
    """The options a help lists (on their own lines; not those its description names)."""
    lines = [line for line in text.splitlines() if line.startswith("  -")]
    return set(re.findall(r"(?<![\w-])(--?[a-z][\w.-]*)", "\n".join(lines)))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option the parser accepts, as spelt on the command line."""
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_short_and_shows_the_common_options(command, capsys):
    text = help_of(command, "--help", capsys)
    lines = text.splitlines()
    assert len(lines) < MAX_LINES, f"{command} --help: {len(lines)} lines\n{text}"
    shown = flags_in(text)
    missing = [n for n in COMMON[command] if f"--{n}" not in shown]
    assert not missing, f"{command} --help lacks its common options {missing}"
    parser = parsers()[command]
    required = [a.option_strings[-1] for a in parser._actions if a.required and a.option_strings]
    assert set(required) <= shown, (command, required)
    options = [a for a in parser._actions if a.option_strings and a.dest not in HELPS]
    hidden = [a for a in options if not set(a.option_strings) & shown]
    assert hidden or len(options) <= len(COMMON[command]) + 1, command  # + --config
    assert lines[-1] == (
        f"--help-all lists all {len(options)} options, by section "
        f"({len(options) - len(hidden)} shown here)."
    ), text


@pytest.mark.parametrize("command", COMMANDS)
def test_help_all_lists_every_option_by_section(command, capsys):
    text = help_of(command, "--help-all", capsys)
    parser = parsers()[command]
    missing = option_strings(parser) - flags_in(text)
    assert not missing, f"{command} --help-all lacks {sorted(missing)}"
    assert "--help-all lists" not in text  # the pointer is for --help only
    # Grouped by section: each dotted option sits under its section's title.
    section = None
    for line in text.splitlines():
        if re.fullmatch(r"\S.*:", line):
            section = line[:-1]
        elif m := re.match(r"  (?:-\w, )?--([\w.]+)\.[\w]+ ", line):
            assert m.group(1) == section, (command, line, section)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_option_help_hides_is_parsed_as_ever(command, capsys):
    """Every option --help leaves out is still taken, each to its own field."""
    parser = parsers()[command]
    shown = flags_in(help_of(command, "--help", capsys))
    hidden = [a for a in parser._actions if a.option_strings and not set(a.option_strings) & shown]
    required = [
        a for a in parser._actions if a.required or (not a.option_strings and a.nargs is None)
    ]
    argv = [command]
    for action in required:
        argv += [*action.option_strings[-1:], "x"]
    for action in hidden:
        argv += [action.option_strings[-1], "x"]
    args = build_parser().parse_args(argv)
    for action in hidden:
        assert vars(args)[action.dest] == "x", (command, action.option_strings)


def test_a_common_option_that_is_no_option_fails_when_the_parser_is_built():
    parser = argparse.ArgumentParser(prog="diversens x")
    parser.add_argument("--size", dest="cfg:size")
    with pytest.raises(ValueError, match="no option --sise"):
        config.add_help_all(parser, ["sise"])


def test_help_shows_a_nested_config_s_own_default(capsys):
    """ScoringConfig's `measure` defaults text_field to "responses" (a row's candidates),
    MeasureConfig to "response": each command's help says the one its run takes."""
    pipeline = help_of("pipeline", "--help-all", capsys)
    measure = help_of("measure", "--help-all", capsys)
    after = pipeline.split("--pairs.scoring.measure.text_field", 1)[1].split("\n  -")[0]
    assert "(default: 'responses')" in after.replace("\n", " ").replace("      ", "")
    after = measure.split("--text_field", 1)[1].split("\n  -")[0]
    assert "(default: 'response')" in after.replace("\n", " ").replace("      ", "")


def test_docs_options_md_is_what_the_configs_give():
    committed = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert committed == markdown(parsers()), f"docs/options.md is stale: run `{REGENERATE}`"


def test_docs_options_md_lists_every_option_of_every_command():
    """Read back from its tables (each says how each command spells its options), the file
    holds exactly the options of each command's config."""
    text = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    listed: dict[str, set[str]] = {}
    for table in text.split("\n## ")[1:]:
        names = re.findall(r"^\| \**`([\w]+)`", table, flags=re.M)
        (spelling,) = re.findall(r"^Options: (.*)\.$", table, flags=re.M)
        for flag, commands in re.findall(r"`--([\w.]*)NAME` in ([\w, -]+)", spelling):
            for command in commands.split(", "):
                listed.setdefault(command, set()).update(f"--{flag}{n}" for n in names)
    for command, parser in parsers().items():
        fields = {a.option_strings[-1] for a in parser._actions if hasattr(a, "option")}
        assert listed[command] == fields, command
