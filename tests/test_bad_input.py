"""Every user mistake of issue #9 through the real CLI: exit code 2, one line on stderr naming
the culprit (file, row, field or option), and nothing written at the final output path."""

import json
from pathlib import Path

import pytest

from diversens.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
GOOD = {"prompt": "Name a colour."}
pytestmark = pytest.mark.slow  # every case starts Ray and resolves the model


def jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n"
                              for r in rows))  # fmt: skip
    return path


CASES = {
    "malformed JSONL": (
        lambda t: [str(jsonl(t / "p.jsonl", [GOOD, b'{"prompt": "unclosed\n']))],
        r"p.jsonl: row 2: malformed JSON",
    ),
    "row without a prompt": (
        lambda t: [str(jsonl(t / "p.jsonl", [GOOD, {"text": "hi"}]))],
        r"p.jsonl: row 2: needs a field 'prompt' (string) or 'messages' (list)",
    ),
    "empty prompt": (
        lambda t: [str(jsonl(t / "p.jsonl", [GOOD, {"prompt": "  "}]))],
        r"p.jsonl: row 2: field 'prompt': expected a non-empty string",
    ),
    "non-UTF-8 bytes": (
        lambda t: [str(jsonl(t / "p.jsonl", [GOOD, b'{"prompt": "caf\xe9"}\n']))],
        r"p.jsonl: row 2: not UTF-8",
    ),
    "duplicate prompt ids": (
        lambda t: [str(jsonl(t / "p.jsonl", [{**GOOD, "prompt_id": "a"}] * 2))],
        r"p.jsonl: row 2: field 'prompt_id': duplicate 'a' (first at row 1)",
    ),
    "unknown task": (
        lambda t: [str(jsonl(t / "p.jsonl", [{**GOOD, "task": "poem"}]))],
        r"p.jsonl: row 1: field 'task': 'poem' is not one of",
    ),
    "unknown strategy": (
        lambda t: ["--prompts.split", "train", "--selection.strategy", "longest"],
        r"option selection.strategy: unknown strategy 'longest' (choose from",
    ),
    "wrong type in the config": (
        lambda t: ["--config", str(config_file(t, "pairs:\n  sampling: {max_new_tokens: many}\n"))],
        r"cfg.yaml: field pairs.sampling.max_new_tokens: expected int, got 'many'",
    ),
    "model path that does not exist": (
        lambda t: ["--prompts.split", "train", "--sampling.model", str(t / "no-model")],
        r"model path '{t}/no-model' does not exist",
    ),
    "unwritable output dir": (None, r"output {out}: cannot write there"),
    "more GPUs requested than the cluster has": (
        lambda t: ["--prompts.split", "train", "--sampling.num_gpus_per_actor", "3"],
        r"option sampling.num_gpus_per_actor=3 asks for GPUs, but the Ray cluster has 2",
    ),
    "CUDA device without a GPU share": (
        lambda t: ["--prompts.split", "train", "--sampling.device", "cuda"],
        r"device 'cuda' needs num_gpus_per_actor > 0",
    ),
}


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_generate_pairs_bad_input(case, tmp_path, capsys, ray_local):
    make_args, message = CASES[case]
    out = tmp_path / "out"
    if make_args is None:  # the output's parent is a file: nothing can be created there
        (tmp_path / "a-file").write_text("")
        out, args = tmp_path / "a-file" / "out", ["--prompts.split", "train"]
    else:
        args = make_args(tmp_path)
    base = ["generate-pairs", "--prompts.num_per_task", "1"]
    if "--config" not in args:
        base += ["--config", TINY]
    assert main([*base, *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diversens generate-pairs: error: "), err
    assert message.format(t=tmp_path, out=out) in err
    assert not out.exists() or not any(out.iterdir()), "no output may be left at the final path"


def test_train_pairs_file_without_chosen_rejected(tmp_path, capsys):
    pairs = jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a", "other": "b"}])
    out = tmp_path / "out"
    assert main(["train", str(pairs), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pairs.jsonl: no field 'rejected'" in err, err
    assert not out.exists()
