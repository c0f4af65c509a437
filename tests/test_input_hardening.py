"""Every bad or odd input of issue #14 through the real CLI, in-process: exit code 2 and one line
on stderr naming the file, row, field or option at fault, before Ray starts (`ray.init` raises
here) or any model loads, and every file the user gave left byte for byte as it was.

Cases are grouped by class, one parametrised test per class; each case builds its inputs under
tmp_path and returns the argv (`{t}` in the expected message is tmp_path).
"""

import gzip
import json
import os
from pathlib import Path

import pytest

from diversens.cli import main
from diversens.config import load
from diversens.jobs.config import PipelineConfig
from diversens.prompts.loading import load_prompts
from diversens.scoring.measure import MeasureConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
PROMPT = {"prompt": "Name a colour."}
PAIR = {"prompt": "Name a colour.", "chosen": "Teal.", "rejected": "Red."}


def write(path: Path, rows: list) -> str:
    """JSONL from dicts (or raw bytes per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n"
                              for r in rows))  # fmt: skip
    return str(path)


def parquet(path: Path, rows: list[dict]) -> str:
    import pandas as pd

    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def model_dir_without_config(t: Path) -> str:
    (t / "model").mkdir()
    (t / "model" / "weights.bin").write_bytes(b"\0")
    return str(t / "model")


def yaml_file(t: Path, text: str | bytes) -> str:
    path = t / "cfg.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def fifo(t: Path) -> str:
    os.mkfifo(t / "pipe.jsonl")
    return str(t / "pipe.jsonl")


def deep_json(depth: int) -> bytes:
    return b'{"prompt": "x", "meta": ' + b"[" * depth + b"]" * depth + b"}\n"


def in_dir(t: Path) -> list[str]:
    """generate-pairs writing into the directory that holds its prompt file."""
    src = write(t / "run" / "p.jsonl", [PROMPT])
    return ["generate-pairs", src, "--config", TINY, "-o", str(t / "run")]


# Each class: {case: (argv builder, expected message)}.
CLASSES = {
    "user data destroyed or scattered": {
        "generate onto its jsonl input": (
            lambda t: ["generate", write(t / "p.jsonl", [PROMPT]), "-o", str(t / "p.jsonl")],
            "output {t}/p.jsonl: must end in .parquet",
        ),
        "generate onto its parquet input": (
            lambda t: ["generate", parquet(t / "p.parquet", [PROMPT]), "-o", str(t / "p.parquet")],
            "output {t}/p.parquet: is the input file",
        ),
        "measure onto its input": (
            lambda t: [
                "measure",
                parquet(t / "r.parquet", [{"response": "hi"}]),
                "-o",
                str(t / "r.parquet"),
            ],  # fmt: skip
            "output {t}/r.parquet: is the input file",
        ),
        "generate-pairs -o empty": (
            lambda t: ["generate-pairs", write(t / "p.jsonl", [PROMPT]), "-o", ""],
            "option -o/--output: empty path",
        ),
        "generate -o empty": (
            lambda t: ["generate", write(t / "p.jsonl", [PROMPT]), "-o", ""],
            "option -o/--output: empty path",
        ),
        "measure -o empty": (
            lambda t: ["measure", write(t / "r.jsonl", [{"response": "hi"}]), "-o", ""],
            "option -o/--output: empty path",
        ),
        "generate-pairs into the current directory": (
            lambda t: ["generate-pairs", write(t / "p.jsonl", [PROMPT]), "-o", "."],
            "output .: is the current directory",
        ),
        "generate-pairs into the directory of its input": (
            in_dir,
            "output {t}/run: holds the input {t}/run/p.jsonl",
        ),
        "generate onto an existing directory": (
            lambda t: ["generate", write(t / "p.jsonl", [PROMPT]), "-o", str(t)],
            "output {t}: is a directory; name a .parquet file",
        ),
    },
    "train checks before Ray": {
        "missing model path": (
            lambda t: [
                "train",
                write(t / "pairs.jsonl", [PAIR]),
                "-o",
                str(t / "o"),
                "--model",
                str(t / "nope"),
            ],  # fmt: skip
            "model path '{t}/nope' does not exist",
        ),
        "model dir without config.json": (
            lambda t: [
                "train",
                write(t / "pairs.jsonl", [PAIR]),
                "-o",
                str(t / "o"),
                "--model",
                model_dir_without_config(t),
            ],  # fmt: skip
            "model path '{t}/model' is a directory without config.json",
        ),
        "output is an existing file": (
            lambda t: [
                "train",
                write(t / "pairs.jsonl", [PAIR]),
                "-o",
                write(t / "o.txt", [{}]),
            ],  # fmt: skip
            "output {t}/o.txt: exists and is not a directory",
        ),
    },
    "pairs without signal": {
        "chosen equals rejected": (
            lambda t: [
                "train",
                write(t / "pairs.jsonl", [PAIR, {**PAIR, "chosen": "Red. "}]),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "pairs.jsonl: row 2: fields 'chosen' and 'rejected' are the same text",
        ),
        "whitespace-only chosen": (
            lambda t: [
                "train",
                write(t / "pairs.jsonl", [{**PAIR, "chosen": " \n "}]),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "pairs.jsonl: row 1: field 'chosen' is empty",
        ),
        "prompt message with an unknown role": (
            lambda t: [
                "train",
                write(
                    t / "pairs.jsonl",
                    [
                        {
                            "prompt": [{"role": "wizard", "content": "hi"}],
                            "chosen": [{"role": "assistant", "content": "a"}],
                            "rejected": [{"role": "assistant", "content": "b"}],
                        }
                    ],
                ),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "pairs.jsonl: row 1: field 'prompt[0].role': 'wizard' is not one of",
        ),
    },
    "checked before the expensive part": {
        "unknown dd measure": (
            lambda t: ["eval", "-o", str(t / "o"), "--dd_measures", "bogus"],
            "option dd_measures: unknown ['bogus']",
        ),
        "missing GloVe file": (
            lambda t: ["eval", "-o", str(t / "o"), "--glove_path", str(t / "glove.txt")],
            "{t}/glove.txt: no such file",
        ),
        "eval model dir without config.json": (
            lambda t: [
                "eval",
                "-o",
                str(t / "o"),
                "--models",
                f"base={model_dir_without_config(t)}",
            ],  # fmt: skip
            "model path '{t}/model' is a directory without config.json",
        ),
        "measure output that cannot be written": (
            lambda t: [
                "measure",
                write(t / "r.jsonl", [{"response": "hi"}]),
                "-o",
                "/proc/x.parquet",
            ],  # fmt: skip
            "output /proc/x.parquet: cannot write there",
        ),
    },
    "inputs that used to give tracebacks": {
        "config file with a non-UTF-8 byte": (
            lambda t: [
                "generate-pairs",
                "--config",
                yaml_file(t, b"pairs:\n  x: caf\xe9\n"),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "config file {t}/cfg.yaml: not UTF-8 (byte ",
        ),
        "JSON nested 100k deep": (
            lambda t: [
                "generate",
                write(t / "p.jsonl", [deep_json(100_000)]),
                "-o",
                str(t / "c.parquet"),
            ],  # fmt: skip
            "p.jsonl: row 1: JSON nested too deeply",
        ),
        "lone surrogate in a prompt": (
            lambda t: [
                "generate",
                write(t / "p.jsonl", [b'{"prompt": "a\\ud800b"}\n']),
                "-o",
                str(t / "c.parquet"),
            ],  # fmt: skip
            "p.jsonl: row 1: field 'prompt': holds a lone surrogate escape",
        ),
        "lone surrogate in a response": (
            lambda t: ["measure", write(t / "r.jsonl", [b'{"response": "\\uDC00"}\n'])],
            "r.jsonl: row 1: field 'response': holds a lone surrogate escape",
        ),
        "lone surrogate in a pair": (
            lambda t: [
                "train",
                write(
                    t / "pairs.jsonl",
                    [PAIR, b'{"prompt": "p", "chosen": "\\ud83d", "rejected": "b"}\n'],
                ),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "pairs.jsonl: row 2: field 'chosen': holds a lone surrogate escape",
        ),
        "measure on CUDA without CUDA": (
            lambda t: [
                "measure",
                write(t / "r.jsonl", [{"response": "hi"}]),
                "--device",
                "cuda",
            ],  # fmt: skip
            "option --device 'cuda': no CUDA device on this machine",
        ),
    },
    "inputs that used to hang": {
        "a hundred million prompts per task": (
            lambda t: ["generate-pairs", "--prompts.num_per_task", "100000000", "-o", str(t / "o")],
            "option prompts.num_per_task: must be in [1, 100000], got 100000000",
        ),
        "a Ray address nobody answers": (
            lambda t: [
                "generate-pairs",
                "--prompts.num_per_task",
                "1",
                "--config",
                TINY,
                "--ray_address",
                "127.0.0.1:1",
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "option --ray_address 127.0.0.1:1: no Ray cluster answers there (Connection refused)",
        ),
    },
    "accepted though it cannot work": {
        "temperature nan": (
            lambda t: [
                "generate",
                "--prompts.split",
                "eval",
                "--sampling.temperature",
                "nan",
                "-o",
                str(t / "c.parquet"),
            ],  # fmt: skip
            "option sampling.temperature: expected a finite number, got 'nan'",
        ),
        "temperature inf in a config file": (
            lambda t: [
                "generate-pairs",
                "--config",
                yaml_file(t, "pairs:\n  sampling: {temperature: .inf}\n"),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "cfg.yaml: field pairs.sampling.temperature: expected a finite number, got inf",
        ),
        "one candidate per prompt for generate-pairs": (
            lambda t: [
                "generate-pairs",
                "--sampling.num_samples_per_prompt",
                "1",
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "option sampling.num_samples_per_prompt: sampling.num_samples_per_prompt must be >= 2",
        ),
        "one candidate per prompt for pipeline": (
            lambda t: [
                "pipeline",
                "--pairs.sampling.num_samples_per_prompt",
                "1",
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "option pairs.sampling.num_samples_per_prompt: sampling.num_samples_per_prompt must",
        ),
        "vLLM KV cache of nan GiB": (
            lambda t: ["generate-pairs", "--sampling.kv_cache_gib", "nan", "-o", str(t / "o")],
            "option sampling.kv_cache_gib: expected a finite number, got 'nan'",
        ),
        "vLLM context of 0 tokens": (
            lambda t: ["generate-pairs", "--sampling.max_model_len", "0", "-o", str(t / "o")],
            "option sampling.max_model_len: max_model_len must be >= 1, got 0",
        ),
        "vLLM dtype it has no kernels for": (
            lambda t: ["generate-pairs", "--sampling.dtype", "float8", "-o", str(t / "o")],
            "option sampling.dtype: dtype must be one of",
        ),
        "vLLM tensor parallel size 0": (
            lambda t: ["eval", "--sampling.tensor_parallel_size", "0", "-o", str(t / "o")],
            "option sampling.tensor_parallel_size: tensor_parallel_size must be >= 1, got 0",
        ),
        "misspelt section in a pipeline config": (
            lambda t: [
                "generate-pairs",
                "--config",
                yaml_file(t, "pairs:\n  selection: {num_pairs: 5}\ntrian:\n  beta: 1\n"),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "cfg.yaml: field trian: unknown (known here: pairs, train, eval",
        ),
        "duplicate YAML key": (
            lambda t: [
                "generate-pairs",
                "--config",
                yaml_file(t, "pairs:\n  selection: {num_pairs: 5}\n  selection: {}\n"),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "config file {t}/cfg.yaml line 3: duplicate key 'selection'",
        ),
    },
    "silent loss in measure": {
        "group field that is not there": (
            lambda t: [
                "measure",
                write(t / "r.jsonl", [{"response": "hi"}]),
                "--group_field",
                "nope",
            ],  # fmt: skip
            "r.jsonl: no field 'nope' (fields: response); choose one with --group_field",
        ),
        "input column named like a measure": (
            lambda t: ["measure", write(t / "r.jsonl", [{"response": "hi", "n_words": 9}])],
            "r.jsonl: field 'n_words' has the name of a measure this command adds",
        ),
    },
    "unclear messages": {
        "a FIFO named like a prompt file": (
            lambda t: ["generate", fifo(t), "-o", str(t / "c.parquet")],
            "pipe.jsonl: not a regular file",
        ),
        "a directory named like a prompt file": (
            lambda t: [
                "generate-pairs",
                str((t / "d.jsonl").mkdir() or t / "d.jsonl"),
                "-o",
                str(t / "o"),
            ],  # fmt: skip
            "{t}/d.jsonl: is a directory, not a file",
        ),
        "gzip data": (
            lambda t: [
                "measure",
                str((t / "r.jsonl").write_bytes(gzip.compress(b"{}\n")) and t / "r.jsonl"),
            ],  # fmt: skip
            "r.jsonl: gzip-compressed; decompress it first",
        ),
        "range error in a config file names the file and key": (
            lambda t: [
                "generate-pairs",
                "--config",
                yaml_file(t, "pairs:\n  selection: {num_pairs: 0}\n"),
                "-o",
                str(t / "o"),
            ],
            "cfg.yaml: field pairs.selection.num_pairs: num_pairs must be >= 1, got 0",
        ),
        "range error on the command line names the option": (
            lambda t: ["generate-pairs", "--sampling.top_p", "0", "-o", str(t / "o")],
            "option sampling.top_p: top_p must be in (0, 1]",
        ),
    },
}


@pytest.fixture
def no_ray(monkeypatch):
    """Reaching `ray.init` fails the test: every case must be refused before Ray starts."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# Their checks come after the built-in model resolves, which converts it on a fresh cache.
LOADS_A_MODEL = {"inputs that used to hang"}


@pytest.mark.parametrize(
    "cls", [pytest.param(c, marks=[pytest.mark.slow] * (c in LOADS_A_MODEL)) for c in CLASSES]
)
def test_bad_input_is_one_line_before_ray(cls, tmp_path, capsys, monkeypatch, no_ray):
    monkeypatch.chdir(tmp_path)  # outputs named "." or "" would land here
    for n, (case, (make_argv, message)) in enumerate(CLASSES[cls].items()):
        t = tmp_path / f"case{n}"
        t.mkdir()
        argv = make_argv(t)
        before = snapshot(t)
        assert main(argv) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ": error: " in err, (case, err)
        assert message.format(t=t) in err, (case, err)
        assert snapshot(t) == before, f"{case}: the user's files changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"case{n}" for n in range(len(CLASSES[cls]))
    ), "nothing may be written into the current directory"


def test_utf8_bom_is_accepted(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(PROMPT).encode() + b"\n")
    prompts = load_prompts(src)
    assert prompts.messages[0] == [{"role": "user", "content": "Name a colour."}]


def test_measure_reads_its_section_of_a_pipeline_config():
    cfg = load(MeasureConfig, TINY, None, "pairs.scoring.measure", whole=PipelineConfig)
    assert cfg == MeasureConfig()  # tiny.yaml sets no measure options: the defaults


def test_every_shipped_config_passes_the_whole_file_check():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load(PipelineConfig, path, None)  # raises on any unknown or duplicate key


INTERRUPTS = {  # signal: (exit code, the one line after the job started)
    "SIGINT": (130, "diversens generate-pairs: interrupted; rerun the same command to resume"),
    "SIGTERM": (
        143,
        "diversens generate-pairs: terminated (SIGTERM); rerun the same command to resume",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("signame", list(INTERRUPTS))
def test_ctrl_c_and_sigterm_are_one_line_and_mark_the_run_incomplete(tmp_path, signame):
    """Ctrl-C (SIGINT to the foreground process group) or SIGTERM (`kill`, a scheduler) while
    the engine samples: sent once the first chunk's part is written with 15 of 16 chunks to go
    (one prompt a chunk, one engine), so work provably remains however fast the machine. One
    line, the signal's exit code, no native stack dump nor Ray's core worker notice, and a
    summary that says incomplete; within 120 s of the signal (a Ctrl-C mid-sampling was seen to
    hang: issue 27)."""
    import signal
    import subprocess
    import sys
    import time

    code, line = INTERRUPTS[signame]
    n = 16
    src = write(tmp_path / "p.jsonl", [{"prompt": f"Write a story about {t}."}
                                       for t in range(n)])  # fmt: skip
    out, err_file = tmp_path / "out", tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "diversens.cli", "generate-pairs", src,
            "--sampling.prompts_per_chunk", "1", "--sampling.max_actors", "1",
            "--sampling.max_new_tokens", "64", "-o", str(out)]  # fmt: skip
    with err_file.open("w") as err:  # a file, not a pipe: a full pipe would stall the job
        proc = subprocess.Popen(argv, start_new_session=True, stderr=err, text=True)
    try:
        deadline = time.monotonic() + 900
        while not list((out / "parts").glob("*.parquet")):  # the state, not a guess of time
            assert proc.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, "no chunk done in 900 s: " + err_file.read_text()
            time.sleep(0.2)
        parts = len(list((out / "parts").glob("*.parquet")))
        os.killpg(proc.pid, getattr(signal, signame))
        assert parts < n
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err_file.read_text()
    lines = text.splitlines()
    after = lines[next(i for i, x in enumerate(lines) if "chunks to sample and score" in x) + 1 :]
    assert proc.returncode == code, text
    assert "Traceback" not in text and "*** SIG" not in text and "PC: @" not in text, text
    notice = "has constructor arguments in the object store"  # Ray's core worker: to the file
    assert notice not in text and notice in (out / "logs" / "diversens.log").read_text()
    assert [x for x in after if x.startswith("diversens ") or "error" in x.lower()] == [line], text
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["complete"] is False and not (out / "pairs.parquet").exists()
