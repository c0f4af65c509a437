"""Reliability of the generate-pairs job on a real local Ray with the bundled models:
- a run killed (SIGKILL, whole process group) at a random point and run again ends with the same
  rows as an uninterrupted run, sampling only the chunks that were missing; a second run into
  its output, with other settings, is refused while it runs and after it died;
- an engine actor that dies mid-batch is restarted by Ray and the job's counts stay exact;
- so is one whose vLLM EngineCore process (multiprocessing on, as on GPU) is killed mid-run:
  the dead engine takes its actor with it, and no prompt is quarantined for it (one job takes
  both faults, on one chunk);
- a prompt too long for the model's context is quarantined, not a crash;
- the uninterrupted run writes every output, scores every candidate, counts its yield from
  what was generated, and its pairs load in TRL (every strategy's accounting:
  tests/jobs/test_study_quick.py, which selects them all).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from diversens import config
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import run
from diversens.prompts.loading import load_prompts

pytestmark = pytest.mark.slow

CONFIG = """\
pairs:
  sampling: {max_new_tokens: 24, temperature: 0.8, prompts_per_chunk: 1}
  scoring: {quality: {strict_compliance: false}}
  selection: {num_pairs: 10}
  compare_strategies: [diverse-ns, random]
"""
TOPICS = ("the sea", "an old clock", "a rainy city", "a tired dog", "a red kite", "snow")
TOO_LONG = "word " * 9000  # SmolLM2's context is 8192 tokens
OUTPUTS = ("scored", "pairs.parquet", "quarantine.jsonl")  # and run_summary.json, see below


@pytest.fixture(scope="module")
def setup(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    rows = [{"prompt": f"Write one short sentence about {t}."} for t in TOPICS]
    rows.insert(3, {"prompt": TOO_LONG})
    src = root / "prompts.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg_path = root / "cfg.yaml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(GeneratePairsConfig, cfg_path, None, section="pairs")
    prompts = load_prompts(src)
    summary = run(prompts, cfg, root / "uninterrupted")
    return root, src, cfg_path, cfg, prompts, summary


def scored(out):
    return pd.read_parquet(out / "scored")


def cli(src, cfg_path, out) -> subprocess.Popen:
    argv = [sys.executable, "-m", "diversens.cli", "generate-pairs", str(src),
            "--config", str(cfg_path), "-o", str(out)]  # fmt: skip
    return subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_uninterrupted_run_quarantines_the_too_long_prompt(setup):
    root, _, _, _, prompts, summary = setup
    assert summary["prompts"] == 7 and summary["prompts_quarantined"] == {"too_long": 1}
    assert summary["candidates"] == 6 * 4
    held = [json.loads(line) for line in (root / "uninterrupted/quarantine.jsonl").open()]
    assert [h["prompt_id"] for h in held] == [prompts.prompt_id[3]]
    assert held[0]["quarantine"].startswith("too_long: needs ")
    kept = [p for i, p in enumerate(prompts.prompt_id) if i != 3]
    assert sorted(scored(root / "uninterrupted").prompt_id) == sorted(kept)
    for strategy, n in summary["pairs"].items():
        assert n + sum(summary["prompts_without_pair"][strategy].values()) == 6, strategy
        # The yield counts the quarantined prompt as a prompt lost.
        lost = summary["yield"]["strategies"][strategy]["prompts_lost"]
        assert lost["quarantined"] == 1 and n + sum(lost.values()) == 7, strategy


def test_outputs_written_and_stamped(setup):
    root, *_, summary = setup
    out = root / "uninterrupted"
    for name in ("pairs.parquet", "pairs_random.parquet", "selection_report.md", "run_summary.json",
                 "selection_lengths.png", "selection_gain_vs_length.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert (
        json.loads((out / "run_summary.json").read_text())["config_hash"] == summary["config_hash"]
    )


def test_scored_rows_hold_all_candidates_and_measures(setup):
    rows = scored(setup[0] / "uninterrupted")
    for col in ("responses", "n_words", "entropy", "dsi", "quality", "valid", "reject_reason"):
        assert all(len(v) == 4 for v in rows[col]), col
    valid = np.concatenate(rows.valid.to_list())
    reasons = np.concatenate(rows.reject_reason.to_list())
    assert all((r is None) == v for r, v in zip(reasons, valid, strict=True))


def test_yield_counts_what_was_generated(setup):
    """Over every prompt given, the quarantined one included (it cost no tokens)."""
    root, *_, prompts, summary = setup
    out = root / "uninterrupted"
    rows = scored(out)
    tokens = int(np.concatenate(rows.n_tokens.to_list()).sum())  # truncated ones included
    y = json.loads((out / "run_summary.json").read_text())["yield"]
    assert (y["prompts"], y["candidates"], y["generated_tokens"]) == (len(prompts), 24, tokens)
    assert y["tokens_per_candidate"] == pytest.approx(tokens / 24)
    assert y["candidates_lost"] == summary["candidates_rejected"]
    assert y["candidates_valid"] == int(np.concatenate(rows.valid.to_list()).sum())
    for strategy, s in y["strategies"].items():
        assert s["pairs"] == summary["pairs"][strategy]
        assert s["per_100_prompts"] == pytest.approx(100 * s["pairs"] / len(prompts))
        assert s["per_100k_tokens"] == pytest.approx(1e5 * s["pairs"] / tokens)
        assert s["prompts_lost"] == {"quarantined": 1, **summary["prompts_without_pair"][strategy]}
    assert f"{tokens:,} generated tokens" in (out / "selection_report.md").read_text()


def test_pairs_load_in_trl(setup, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from diversens.models import resolve_model

    root, *_, summary = setup
    best = max(summary["pairs"], key=summary["pairs"].get)
    assert summary["pairs"][best] > 0, summary["prompts_without_pair"]
    name = "pairs.parquet" if best == "diverse-ns" else f"pairs_{best}.parquet"
    pairs = Dataset.from_parquet(str(root / "uninterrupted" / name))
    path = resolve_model("smollm2-135m-instruct")
    args = DPOConfig(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True,
                     max_length=256)  # fmt: skip
    trainer = DPOTrainer(
        model=path,
        args=args,
        train_dataset=pairs,
        processing_class=AutoTokenizer.from_pretrained(path),
    )
    tokenized = trainer.train_dataset
    assert len(tokenized) == len(pairs)
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(tokenized.column_names)


@pytest.fixture(scope="module")
def killed(setup):
    """The case reported, on a run that is then killed: generate-pairs A, and once A has parts,
    B with another temperature into the same directory (both printed success; only B's outputs
    remained). A is frozen (SIGSTOP: it holds its lock, and writes no part) while B runs, then
    killed (SIGKILL, whole process group: nothing released) at a random point, 1 to 5 of 7
    chunks written; C, with B's settings, comes after A's death. What each left, for the tests
    below."""
    root, src, cfg_path, *_ = setup
    out = root / "killed"
    kill_after = random.randint(1, 5)  # parts written before the kill (7 chunks in all)
    hotter = root / "hotter.yaml"
    hotter.write_text(CONFIG.replace("temperature: 0.8", "temperature: 1.2"))
    first = cli(src, cfg_path, out)
    try:
        deadline = time.monotonic() + 300
        while len(list((out / "parts").glob("*.parquet"))) < kill_after:
            assert first.poll() is None, f"run ended before the kill: {first.stderr.read()}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGSTOP)
        second = cli(src, hotter, out)
        refused_while_running = second.wait(timeout=300), second.stderr.read(), first.poll()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    third = cli(src, hotter, out)
    refused_after = third.wait(timeout=300), third.stderr.read()
    return out, first.pid, refused_while_running, refused_after


def test_a_second_run_into_a_running_output_is_refused_and_never_mixes_settings(killed):
    """B is refused in one line naming A while A runs, and once A is dead for its other
    settings; the output holds A's (the resume below ends with the uninterrupted result)."""
    _, pid, (code, err, first_poll), (code_after, err_after) = killed
    assert code == 2 and err.count("\n") == 1, err
    assert f"in use by another run (generate-pairs, pid {pid} on host" in err, err
    assert first_poll is None, "the refused run stopped the first"
    assert code_after == 2, err_after
    assert err_after.count("\n") == 1, err_after
    assert "holds a generate-pairs run with other settings" in err_after, err_after


def test_killed_run_resumes_to_the_uninterrupted_result(setup, killed):
    root, src, cfg_path, _, _, summary = setup
    out = killed[0]
    done_before = len(list((out / "parts").glob("*.parquet")))
    assert done_before < 7, "killed too late to test resume"
    assert not any((out / name).exists() for name in OUTPUTS), "no final output from a killed run"
    # The summary is there from the start, and says the run did not finish.
    assert json.loads((out / "run_summary.json").read_text())["complete"] is False

    again = cli(src, cfg_path, out)
    assert again.wait(timeout=600) == 0, again.stderr.read()
    resumed = json.loads((out / "run_summary.json").read_text())
    assert resumed["complete"] is True
    assert resumed["chunks"] == {"chunks": 7, "reused": done_before, "written": 7 - done_before}
    pd.testing.assert_frame_equal(scored(out), scored(root / "uninterrupted"))
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "pairs.parquet"),
        pd.read_parquet(root / "uninterrupted/pairs.parquet"),
    )
    for key in ("prompts", "prompts_quarantined", "candidates", "pairs", "prompts_without_pair",
                "yield"):  # fmt: skip
        assert resumed[key] == summary[key], key


FAULTY_JOB = """
import json, os, sys, threading, time
from pathlib import Path
import psutil, ray
from diversens import config
from diversens.jobs.config import GeneratePairsConfig
from diversens.jobs.generate_pairs import run
from diversens.prompts.loading import load_prompts
from diversens.sampling import SampleStage

src, cfg_path, out, victim = sys.argv[1:]
core_marker, died_marker = Path(out).parent / "core-killed.json", Path(out).parent / "died-once"

def kill_core(loop):
    # Once the engine has stepped with the victim's requests in, SIGKILL its core (OOM killer).
    steps = loop.stats.steps
    while loop.stats.steps < steps + 2:
        time.sleep(0.01)
    cores = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "EngineCore" in " ".join(p.cmdline()):
                cores.append(p)
        except psutil.Error:  # a child that ended while the scan ran
            pass
    core_marker.write_text(json.dumps([p.pid for p in cores]))
    for p in cores:
        p.kill()

class FaultsOnce(SampleStage):  # in __main__, so Ray pickles it by value
    # The victim's chunk: its first try loses its EngineCore child, its second (on the restarted
    # actor) the actor process itself, and its third runs.
    def process(self, batch):
        if victim in set(batch.prompt_id):
            if not core_marker.exists():
                core_marker.write_text("[]")
                threading.Thread(target=kill_core, args=(self.engine.loop,), daemon=True).start()
            elif not died_marker.exists():
                died_marker.touch()
                os._exit(1)  # the actor process dies mid-batch, as on an OOM kill
        return super().process(batch)

# Room for the restarted engine beside the two scoring pools (1 CPU each), and a fixed memory
# budget for the pools' 9.5 GiB: Ray's default is a share of what the machine has free at the
# moment, which the test process beside it shrinks.
ray.init(num_cpus=4, include_dashboard=False, _memory=12 * 2**30)
cfg = config.load(GeneratePairsConfig, cfg_path, None, section="pairs")
summary = run(load_prompts(src), cfg, Path(out), stage_cls=FaultsOnce)
# A file, not stdout: Ray's log lines from dead workers reach stdout in any order.
result = {"summary": summary, "killed": json.loads(core_marker.read_text()),
          "died": died_marker.exists()}
(Path(out).parent / "result.json").write_text(json.dumps(result, default=str))
"""


@pytest.fixture(scope="module")
def faulty(setup, tmp_path_factory):
    """One generate-pairs job whose engine fails twice on one chunk (FAULTY_JOB): its process,
    the result it wrote, and its output. vLLM's CPU build runs its core in a child process, as
    on GPU (Ray's workers inherit the setting)."""
    _, src, cfg_path, _, prompts, _ = setup
    tmp = tmp_path_factory.mktemp("faulty")
    job = tmp / "job.py"
    job.write_text(FAULTY_JOB)
    argv = [sys.executable, str(job), str(src), str(cfg_path), str(tmp / "out"),
            prompts.prompt_id[5]]  # fmt: skip
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((tmp / "result.json").read_text()), tmp / "out"


def test_engine_actor_death_is_retried_with_exact_counts(setup, faulty):
    root, _, _, _, _, summary = setup
    _, result, out = faulty
    got = result["summary"]
    assert result["died"], "the fault was injected"
    assert got["chunks"] == {"chunks": 7, "reused": 0, "written": 7}
    for key in ("prompts", "prompts_quarantined", "candidates", "pairs", "prompts_without_pair"):
        assert got[key] == summary[key], key
    pd.testing.assert_frame_equal(scored(out), scored(root / "uninterrupted"))


def test_killed_engine_core_takes_its_actor_and_the_run_ends_exact(setup, faulty):
    root, _, _, _, _, summary = setup
    proc, result, out = faulty
    got = result["summary"]
    assert result["killed"], "no EngineCore child of the actor was killed: " + proc.stderr[-3000:]
    # The actor's own line on its way out (Ray forwards a worker's stderr to the driver).
    assert "the vLLM engine is dead (EngineDeadError" in proc.stdout + proc.stderr
    assert got["chunks"] == {"chunks": 7, "reused": 0, "written": 7}
    assert got["prompts_quarantined"] == {"too_long": 1}  # nothing for the dead engine
    for key in ("prompts", "candidates", "pairs", "prompts_without_pair"):
        assert got[key] == summary[key], key
    pd.testing.assert_frame_equal(scored(out), scored(root / "uninterrupted"))
