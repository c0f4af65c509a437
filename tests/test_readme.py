"""The README's test command is exactly what CI runs; its main command names real files."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    main_cmd, test_cmd = readme_commands()[:2]
    assert test_cmd.endswith("&& pytest")
    assert test_cmd in (ROOT / ".ci" / "run").read_text().splitlines()


def test_main_command_inputs_exist():
    main_cmd = readme_commands()[0]
    for token in main_cmd.split():
        if re.search(r"\.(txt|jsonl|yaml|parquet)$", token) and not token.startswith("out/"):
            assert (ROOT / token).exists(), token
