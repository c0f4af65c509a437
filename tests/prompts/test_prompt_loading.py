"""User prompt files: `prompt` or `messages` rows → prompts table; bad rows → one-line errors
naming file, row and field."""

import json

import pandas as pd
import pytest

from diversens.cli import main
from diversens.errors import UserError
from diversens.prompts import load_prompts


def _jsonl(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prompt_and_messages_rows(tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    path = _jsonl(
        tmp_path,
        [
            {"prompt": "Name a colour.", "source": "me"},
            "",
            {"messages": msgs, "task": "cwt", "prompt_id": "x1", "meta": {"k": 1}},
        ],
    )
    df = load_prompts(path)
    assert list(df.columns) == ["prompt_id", "task", "messages", "meta"]
    assert df["messages"][0] == [{"role": "user", "content": "Name a colour."}]
    assert df["messages"][1] == msgs
    assert df["task"].tolist() == ["custom", "cwt"]
    assert df["prompt_id"][1] == "x1" and len(df["prompt_id"][0]) == 16
    assert json.loads(df["meta"][0]) == {"source": "me"}
    assert json.loads(df["meta"][1]) == {"k": 1}
    assert load_prompts(path)["prompt_id"][0] == df["prompt_id"][0]  # computed id is stable


def test_parquet_input(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"prompt": ["a story", "a list"], "task": ["cwt", None]}).to_parquet(path)
    df = load_prompts(path)
    assert df["task"].tolist() == ["cwt", "custom"]


def test_parquet_bad_row_names_row(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"prompt": ["ok", "  "]}).to_parquet(path)
    with pytest.raises(UserError, match=r"p\.parquet: row 2: field 'prompt'"):
        load_prompts(path)


@pytest.mark.parametrize(
    "row, match",
    [
        ({"prompt": ""}, r"row 2: field 'prompt': expected a non-empty string"),
        ({"prompt": 3}, r"row 2: field 'prompt'"),
        ({"text": "hi"}, r"row 2: needs a field 'prompt' \(string\) or 'messages'"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, r"not both"),
        ({"messages": "hi"}, r"row 2: field 'messages'"),
        ({"messages": []}, r"row 2: field 'messages'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, r"field 'messages\[0\]\.role'"),
        ({"messages": [{"role": "user"}]}, r"field 'messages\[0\]\.content'"),
        ({"messages": ["hi"]}, r"field 'messages\[0\]'"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
            r"field 'messages\[1\]\.role': the last message must be 'user'",
        ),
        ({"prompt": "x", "task": "poem"}, r"row 2: field 'task'"),
        ({"prompt": "x", "prompt_id": ""}, r"row 2: field 'prompt_id'"),
        ({"prompt": "x", "meta": 5}, r"row 2: field 'meta'"),
        (
            {"prompt": "again", "prompt_id": "a"},
            r"row 2: field 'prompt_id': duplicate 'a' \(first at row 1\)",
        ),
        ("[1, 2]", r"row 2: expected a JSON object"),
        ("{bad", r"row 2: malformed JSON"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, row, match):
    path = _jsonl(tmp_path, [{"prompt": "fine", "prompt_id": "a"}, row])
    with pytest.raises(UserError, match=match) as err:
        load_prompts(path)
    assert str(err.value).startswith(f"{path}: ")
    assert "\n" not in str(err.value)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_prompts(tmp_path / "none.jsonl")
    with pytest.raises(UserError, match="unsupported file type"):
        load_prompts(tmp_path / "p.csv")
    with pytest.raises(UserError, match="no prompts"):
        load_prompts(_jsonl(tmp_path, [""]))


def test_cli_reports_bad_prompt_file_in_one_line(tmp_path, capsys):
    path = _jsonl(tmp_path, [{"prompt": ""}])
    assert main(["generate", str(path), "-o", str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"diversens generate: error: {path}: row 1: field 'prompt': "
        "expected a non-empty string, got ''"
    )
    assert not (tmp_path / "out.parquet").exists()


def test_cli_needs_exactly_one_prompt_source(tmp_path, capsys):
    assert main(["generate", "-o", str(tmp_path / "o.parquet")]) == 2
    assert "give a PROMPTS file or --prompts.split train|eval" in capsys.readouterr().err
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    assert main(["generate", str(prompts), "--prompts.split", "eval", "-o", "o.parquet"]) == 2
    assert "option prompts.split: 'eval' and a prompt file given" in capsys.readouterr().err
    argv = ["generate", "--prompts.split", "eval", "--sampling.engine", "gpt", "-o", "o.parquet"]
    assert main(argv) == 2
    assert "engine must be one of" in capsys.readouterr().err
