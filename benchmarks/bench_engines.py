"""Anchors for sampling throughput on CPU (vLLM's CPU build, the bundled SmolLM2): the same
requests through plain vLLM, diversens's sampling stage, diversens's generate job on a local Ray,
and ray.data.llm's vLLM processor. Each path runs in a fresh process with the same threads
(vLLM's CPU worker pins torch's thread count per process); the paths alternate over rounds
(A B C D E, then A B C D E again). Machines here are noisy: compare ratios, not absolute times.

Request sets (--requests), on the demo's prompts (`demo_prompts`, an equal share per task):
- one-turn: k = 6 independent answers per prompt (temperature 0.8, min_p 0.05, top_p 1, cap 128,
  no frequency penalty): what every path can express.
- two-turn: the demo's own requests (configs/tiny.yaml pairs.sampling: k = 12, 6 first answers,
  then one "give a different answer" turn after each; caps 192 / pgt 128, frequency_penalty 0.3).
Engine options are `cfg.vllm_options(on_cpu=True)` (eager, 2 GiB KV cache, no chunked prefill),
dtype `cpu_dtype`, max_model_len capped at the model's, for every path.

Paths (--paths):
- plain: `vllm.LLM.chat` with every request of a turn in one call (the limit).
- stage: `SampleStage(cfg)` in-process on the job's chunks, from a thread pool of the pool's
  `concurrent_batches`, as the Ray actor calls it.
- job: `diversens.jobs.generate.run` on a local Ray (`num_cpus` = threads, one engine actor
  holding them); samples from the written Parquet.
- rdllm_n: ray.data.llm's vLLM processor, one row per prompt with `sampling_params.n = k`.
  It returns one sample per prompt: its engine stage keeps `output.outputs[0]` only
  (ray/llm/_internal/batch/stages/vllm_engine_stage.py, `vLLMOutputData.from_vllm_engine_output`)
  while vLLM still generates all k (its tokens are not counted here).
- rdllm_rep: the same processor with each prompt repeated k times, n = 1 (seed per row
  derive_seed(seed, prompt_id, 1, j)): k samples per prompt.
  ray.data.llm on CPU: the engine actor asks Ray for a GPU per tensor-parallel rank unless a
  `placement_group_config` gives its bundles: `{"bundles": [{"CPU": threads}]}` makes it a CPU
  actor of `threads` CPUs. Its chat-template, tokenize and detokenize actors and the pre/post
  maps ask for 1 CPU each by default and would wait for the engine's CPUs forever on a
  `threads`-CPU Ray: they get 0 here (they are light). vLLM's CPU env (V1 multiprocessing off,
  no thread binding) is set in the worker before Ray starts, so Ray's workers inherit it.
  Two-turn is not run for ray.data.llm: two processors chained in one Ray Data pipeline are two
  vLLM engines started at once (Ray Data starts every actor pool when execution starts), each
  holding its own cores and KV cache. On `threads` cores they would have to share the cores (or
  reserve twice as many), so it would not be the same work on the same machine; two pipelines
  one after the other pay the engine start twice.

Measured per path and request set (median over rounds in the Markdown, every round in the JSON):
- wall s: from the worker's start, before importing vLLM or Ray (engine and Ray start-up
  included), to every sample in hand.
- start-up s and steady tok/s = tokens / (wall - start-up), where start-up ends at:
  plain, stage: the engine constructed (first request submitted right after);
  job: the first chunk's `process` call in the engine actor (the actor times its calls; Ray
  start, actor start and model load before it), steady span and wall time to `run` returning
  (the Parquet written; Ray's shutdown and reading the Parquet back come after);
  rdllm: the first request's arrival in vLLM (`arrival_time` of vLLM's request metrics, a wall
  clock), steady span to the last row in the driver (detokenize stage and transfer included).
- tokens: generated tokens per answer as diversens counts them (`vllm_completion`: the EOS token
  vLLM keeps in `token_ids` is not counted; for ray.data.llm, which gives no finish reason, a
  last token that is EOS is not counted).

    python benchmarks/bench_engines.py                       # both sets, 48 prompts, 2 rounds
    python benchmarks/bench_engines.py --num-prompts 4 --rounds 1 --max-new-tokens 16 \
        --out /tmp/eng_smoke/engines.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_generate import demo_config, demo_prompts  # noqa: E402

from diversens.jobs.chunks import chunk_frames, plan_chunks  # noqa: E402
from diversens.sampling import SampleStage, SamplingConfig, derive_seed  # noqa: E402
from diversens.sampling.stage import as_messages, candidate_plan, followup_messages  # noqa: E402

PATHS = ("plain", "stage", "job", "rdllm_n", "rdllm_rep")
REQUESTS = ("one-turn", "two-turn")
ONE_TURN = dict(num_samples_per_prompt=6, num_first_turn=6, temperature=0.8, min_p=0.05,
                top_p=1.0, max_new_tokens=128, max_new_tokens_per_task={},
                frequency_penalty=0.0)  # fmt: skip
VLLM_CPU_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
RDLLM_TWO_TURN = "not run: two processors in one pipeline are two vLLM engines at once"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def request_config(name: str, threads: int, cap: int | None) -> SamplingConfig:
    """The request set's sampling config; `cap` overrides every answer cap (quick runs)."""
    # chunks_in_flight at its default (chunks enough to fill the engine): the demo's 1 is for its
    # pairs stage, where the scorers share the cores; here the engine samples alone.
    cfg = demo_config(**(ONE_TURN if name == "one-turn" else {}), num_cpus_per_actor=threads,
                      chunks_in_flight=None)  # fmt: skip
    if cap:
        per_task = {t: cap for t in cfg.max_new_tokens_per_task}
        cfg = dataclasses.replace(cfg, max_new_tokens=cap, max_new_tokens_per_task=per_task)
    return cfg


def engine_options(cfg: SamplingConfig) -> dict:
    """`vllm.LLM` keyword arguments as `VLLMEngine.__init__` makes them on CPU."""
    from diversens.models import cpu_dtype, resolve_model
    from diversens.sampling.engines import model_context_length

    opts = cfg.vllm_options(True)
    opts["dtype"] = cpu_dtype(cfg.dtype)
    own = model_context_length(resolve_model(cfg.model))
    opts["max_model_len"] = min(opts["max_model_len"], own)
    return opts


def sampling_kwargs(cfg: SamplingConfig, task: str, n: int, seed: int) -> dict:
    return dict(n=n, seed=seed, temperature=cfg.temperature, top_p=cfg.top_p, min_p=cfg.min_p,
                max_tokens=cfg.max_tokens(task), frequency_penalty=cfg.frequency_penalty,
                presence_penalty=cfg.presence_penalty)  # fmt: skip


def second_turn_counts(cfg: SamplingConfig) -> list[int]:
    """Second turns per first answer j (SampleStage's grouping: one request per parent)."""
    plan = candidate_plan(cfg.num_samples_per_prompt, cfg.num_first_turn)
    return [sum(1 for t, p in plan if t == 2 and p == j) for j in range(cfg.num_first_turn)]


def result(t0: float, gen_start: float, tokens: int, samples: int, prompts: int,
           end: float | None = None, **extra) -> dict:  # fmt: skip
    wall = (end or time.time()) - t0
    tokens, samples = int(tokens), int(samples)  # pandas sums are numpy ints: not JSON
    return {"wall_s": wall, "startup_s": gen_start - t0, "tokens": tokens, "samples": samples,
            "samples_per_prompt": samples / prompts,
            "steady_tok_s": tokens / (wall - (gen_start - t0)), **extra}  # fmt: skip


# --- workers: each runs in its own process and returns one result dict -------------------------


def run_plain(cfg: SamplingConfig, prompts: pd.DataFrame, t0: float) -> dict:
    os.environ.update(VLLM_CPU_ENV)  # as VLLMEngine sets them on CPU, before vllm is imported
    from vllm import LLM, SamplingParams

    from diversens.models import resolve_model
    from diversens.sampling.engines import vllm_completion

    llm = LLM(model=resolve_model(cfg.model), **engine_options(cfg))
    gen_start = time.time()
    pids, tasks = prompts.prompt_id.astype(str).tolist(), prompts.task.tolist()
    convs = [as_messages(m) for m in prompts.messages]

    def chat(conversations, params):
        return llm.chat(conversations, sampling_params=params, use_tqdm=False,
                        add_generation_prompt=True)  # fmt: skip

    f = cfg.num_first_turn
    params = [SamplingParams(**sampling_kwargs(cfg, t, f, derive_seed(cfg.seed, p, 1)))
              for p, t in zip(pids, tasks, strict=True)]  # fmt: skip
    outputs = chat(convs, params)
    second_convs, second_params = [], []
    for pid, conv, task, out in zip(pids, convs, tasks, outputs, strict=True):
        for j, n in enumerate(second_turn_counts(cfg)):
            if n:
                answer = out.outputs[j].text.strip()  # as diversens's Completion.text
                second_convs.append(followup_messages(conv, answer, cfg.followup(task)))
                seed = derive_seed(cfg.seed, pid, 2, j)
                second_params.append(SamplingParams(**sampling_kwargs(cfg, task, n, seed)))
    if second_convs:
        outputs += chat(second_convs, second_params)
    done = [vllm_completion(o) for out in outputs for o in out.outputs]
    return result(t0, gen_start, sum(c.n_tokens for c in done), len(done), len(prompts))


def run_stage(cfg: SamplingConfig, prompts: pd.DataFrame, t0: float) -> dict:
    stage = SampleStage(cfg)
    gen_start = time.time()
    frames = chunk_frames(plan_chunks(prompts, cfg.prompts_per_chunk, "bench"))
    workers = cfg.pool().concurrent_batches  # chunk calls the engine actor overlaps
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = pd.concat(list(pool.map(stage, frames)))
    tokens = sum(sum(n) for n in rows.n_tokens)
    samples = sum(len(r) for r in rows.responses)
    return result(t0, gen_start, tokens, samples, len(prompts), concurrent_batches=workers)


class TimedStage(SampleStage):
    """SampleStage that appends each process() call's (start, end) wall time to `log` (a file
    on this machine: the actor runs here too). Pickled by value with this class."""

    log = ""

    def process(self, batch):
        start = time.time()
        out = super().process(batch)
        stats = dataclasses.asdict(self.engine.loop.stats) if hasattr(self.engine, "loop") else {}
        with open(self.log, "a") as f:
            f.write(json.dumps([start, time.time(), stats]) + "\n")
        return out


def job_breakdown(calls: list[list], end: float) -> dict:
    """Where the job's steady span goes: the engine stepping, the engine with nothing to run
    while chunks were out, and the tail from the last chunk's end in the actor to the Parquet
    written (Ray Data's transfer, the driver's assembly and write)."""
    first, last = min(c[0] for c in calls), max(c[1] for c in calls)
    stats = max((c[2] for c in calls), key=lambda s: s.get("steps", 0))  # the last counters
    per_step = stats.get("sequence_steps", 0) / max(stats.get("steps", 0), 1)
    return {"sampling_span_s": last - first, "engine_busy_s": stats.get("busy_s"),
            "tail_s": end - last, "mean_sequences_per_step": per_step}


def run_job(cfg: SamplingConfig, prompts: pd.DataFrame, t0: float) -> dict:
    import functools

    import ray

    import diversens.jobs.generate as job
    from diversens.jobs.dataflow import generate_candidates

    tmp = Path(tempfile.mkdtemp(prefix="bench_job_"))
    TimedStage.log = str(tmp / "calls.jsonl")
    job.generate_candidates = functools.partial(generate_candidates, stage_cls=TimedStage)
    os.environ.update(VLLM_CPU_ENV)  # Ray's workers inherit it (VLLMEngine sets the same)
    threads = int(cfg.num_cpus_per_actor)
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        job.run(prompts, cfg, tmp / "candidates.parquet")
        end = time.time()  # the Parquet written: Ray's shutdown and the read-back are not timed
    finally:
        ray.shutdown()
    rows = pd.read_parquet(tmp / "candidates.parquet")
    calls = Path(TimedStage.log)
    calls = [json.loads(x) for x in calls.read_text().splitlines()]
    tokens = sum(sum(n) for n in rows.n_tokens)
    samples = sum(len(r) for r in rows.responses)
    return result(t0, min(c[0] for c in calls), tokens, samples, len(prompts), end=end,
                  breakdown=job_breakdown(calls, end))  # fmt: skip


def rdllm_rows(cfg: SamplingConfig, prompts: pd.DataFrame, repeat: bool) -> list[dict]:
    """One row per prompt with n = k, or k rows per prompt with n = 1 (one-turn only)."""
    k = cfg.num_samples_per_prompt
    rows = []
    for pid, task, msgs in zip(prompts.prompt_id.astype(str), prompts.task, prompts.messages,
                               strict=True):  # fmt: skip
        msgs = as_messages(msgs)
        if repeat:
            rows += [{"pid": pid, "messages": msgs, "sampling_params":
                      sampling_kwargs(cfg, task, 1, derive_seed(cfg.seed, pid, 1, j))}
                     for j in range(k)]  # fmt: skip
        else:
            params = sampling_kwargs(cfg, task, k, derive_seed(cfg.seed, pid, 1))
            rows.append({"pid": pid, "messages": msgs, "sampling_params": params})
    return rows


def eos_ids(path: str) -> set[int]:
    from transformers import AutoTokenizer, GenerationConfig

    eos = GenerationConfig.from_pretrained(path).eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    tokenizer_eos = AutoTokenizer.from_pretrained(path).eos_token_id
    return {int(e) for e in [*eos, tokenizer_eos] if e is not None}


def run_rdllm(cfg: SamplingConfig, prompts: pd.DataFrame, t0: float, repeat: bool) -> dict:
    os.environ.update(VLLM_CPU_ENV)  # Ray's workers (the engine actor) inherit it
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from diversens.models import resolve_model

    threads = int(cfg.num_cpus_per_actor)
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    path = resolve_model(cfg.model)
    opts = {k: v for k, v in engine_options(cfg).items() if v is not None}
    light = {"num_cpus": 0}  # the CPU stages share the engine's cores instead of waiting for them
    config = vLLMEngineProcessorConfig(
        model_source=path,
        engine_kwargs=opts,
        concurrency=1,
        placement_group_config={"bundles": [{"CPU": threads}]},  # a CPU engine actor, no GPU
        chat_template_stage=light,
        tokenize_stage=light,
        detokenize_stage=light,
        log_engine_metrics=False,  # no Prometheus exporter (plain vLLM has none either)
    )
    processor = build_processor(
        config,
        postprocess=lambda row: {
            "pid": row["pid"],
            "tokens": list(row["generated_tokens"]),
            "arrival": (row.get("metrics") or {}).get("arrival_time"),
        },
        preprocess_map_kwargs=light,
        postprocess_map_kwargs=light,
    )
    rows = rdllm_rows(cfg, prompts, repeat)
    try:
        out = processor(ray.data.from_items(rows)).take_all()
    finally:
        ray.shutdown()
    eos = eos_ids(path)
    tokens = sum(len(r["tokens"]) - int(bool(r["tokens"]) and r["tokens"][-1] in eos) for r in out)
    arrivals = [r["arrival"] for r in out if r["arrival"]]
    per_prompt = pd.Series([r["pid"] for r in out]).value_counts()
    spread = [int(per_prompt.min()), int(per_prompt.max())]
    return result(t0, min(arrivals, default=float("nan")), tokens, len(out), len(prompts),
                  rows_sent=len(rows), samples_per_prompt_min_max=spread)  # fmt: skip


def worker(args) -> None:
    t0 = time.time()
    cfg = request_config(args.requests, args.threads, args.max_new_tokens)
    prompts = demo_prompts(args.num_prompts)
    runs = {
        "plain": run_plain,
        "stage": run_stage,
        "job": run_job,
        "rdllm_n": lambda *a: run_rdllm(*a, repeat=False),
        "rdllm_rep": lambda *a: run_rdllm(*a, repeat=True),
    }
    print(json.dumps(runs[args.worker](cfg, prompts, t0)), flush=True)


# --- parent: rounds, summary, files ------------------------------------------------------------


def run_worker(path: str, requests: str, args) -> dict:
    if path.startswith("rdllm") and requests == "two-turn":
        return {"skipped": RDLLM_TWO_TURN}
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    cap = ["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else []
    argv = [sys.executable, __file__, "--worker", path, "--requests", requests,
            "--num-prompts", str(args.num_prompts), "--threads", threads, *cap]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None and r[key] == r[key]]  # not NaN
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> dict:
    done = [r for r in runs if "wall_s" in r]
    if not done:
        return {"status": runs[0].get("skipped") or "failed"}
    keys = ("wall_s", "startup_s", "steady_tok_s", "tokens", "samples_per_prompt")
    out = {k: median(done, k) for k in keys}
    out["samples_per_s"] = median([{"x": r["samples"] / r["wall_s"]} for r in done], "x")
    return out


def machine() -> dict:
    from diversens.models import cpu_dtype

    info = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                  if ln.startswith("model name")), "unknown")  # fmt: skip
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags],
            "dtype": cpu_dtype(demo_config().dtype)}  # fmt: skip


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"`{res['command']}`", "",
             f"{m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags']) or 'none'}; "
             f"dtype {m['dtype']}; {res['threads']} thread(s) per path; {res['num_prompts']} "
             f"prompts; median of {res['rounds']} round(s)"]  # fmt: skip
    for requests, paths in res["summary"].items():
        base = paths.get("plain", {})
        lines += ["", f"### {requests}", "",
                  "| path | wall s (start-up incl.) | steady tok/s | samples/prompt | "
                  "samples/s end to end | steady tok/s / plain | wall / plain |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for path, s in paths.items():
            if "wall_s" not in s:
                lines.append(f"| {path} | {s['status'][:80]} | | | | | |")
                continue
            rate = ratio(s["steady_tok_s"], base.get("steady_tok_s"))
            wall = ratio(s["wall_s"], base.get("wall_s"))
            lines.append(
                f"| {path} | {s['wall_s']:.1f} | {fmt(s['steady_tok_s'], '.0f')} | "
                f"{s['samples_per_prompt']:.1f} | {s['samples_per_s']:.2f} | {fmt(rate, '.2f')} "
                f"| {fmt(wall, '.2f')} |"
            )
    return "\n".join(lines + job_lines(res) + targets(res)) + "\n"


def job_lines(res: dict) -> list[str]:
    """The job's steady span split (median over rounds), beside plain's time for its tokens."""
    lines = ["", "### Where the job's steady span goes", "",
             "| requests | steady span s | engine stepping s | same tokens at plain's rate s | "
             "engine idle while chunks were out s | tail: last chunk out to Parquet written s | "
             "sequences per step |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for requests, paths in res["runs"].items():
        runs = [r for r in paths.get("job", []) if "breakdown" in r]
        plain = res["summary"][requests].get("plain", {}).get("steady_tok_s")
        if not runs or not plain:
            continue
        b = [{**r["breakdown"], "span": r["wall_s"] - r["startup_s"],
              "at_plain": r["tokens"] / plain,
              "idle": r["breakdown"]["sampling_span_s"] - r["breakdown"]["engine_busy_s"]}
             for r in runs]  # fmt: skip
        cells = [median(b, k) for k in ("span", "engine_busy_s", "at_plain", "idle", "tail_s",
                                        "mean_sequences_per_step")]  # fmt: skip
        lines.append(f"| {requests} | " + " | ".join(fmt(c, ".1f") for c in cells) + " |")
    return lines


TARGETS = (  # (request set, path, minimum of its steady tok/s over plain's), from the issue
    ("one-turn", "stage", 0.9),
    ("two-turn", "stage", 1.0),
    ("one-turn", "job", 0.85),
    ("two-turn", "job", 0.85),
)


def targets(res: dict) -> list[str]:
    """The targets as met or not, on this run's medians; then samples/s against ray.data.llm's
    (the processor that returns k samples per prompt), steady and end to end."""
    lines = ["", "### Targets", ""]
    for requests, path, floor in TARGETS:
        paths = res["summary"].get(requests, {})
        if "wall_s" not in paths.get(path, {}) or "wall_s" not in paths.get("plain", {}):
            continue
        got = paths[path]["steady_tok_s"] / paths["plain"]["steady_tok_s"]
        lines.append(f"- {requests}, {path}: {got:.2f}x plain vLLM's steady tokens/s (target "
                     f">= {floor}): **{'met' if got >= floor else 'not met'}**")  # fmt: skip
    one = res["summary"].get("one-turn", {})
    if "wall_s" in one.get("rdllm_rep", {}):
        prompts = res["num_prompts"]
        for path in ("stage", "job"):
            if "wall_s" not in one.get(path, {}):
                continue
            steady = [steady_samples_per_s(one[p], prompts) for p in (path, "rdllm_rep")]
            ends = [one[p]["samples_per_s"] for p in (path, "rdllm_rep")]
            more = steady[0] > steady[1] and ends[0] > ends[1]
            lines.append(f"- one-turn, {path} against ray.data.llm (k rows, n = 1): samples/s "
                         f"steady {steady[0]:.1f} vs {steady[1]:.1f}, end to end {ends[0]:.2f} vs "
                         f"{ends[1]:.2f}: **{'more' if more else 'not more'}**")  # fmt: skip
    return lines


def steady_samples_per_s(s: dict, prompts: int) -> float:
    return s["samples_per_prompt"] * prompts / (s["wall_s"] - s["startup_s"])


def render(path: Path) -> None:
    """Rewrite the Markdown beside a results JSON (after a change to the tables)."""
    res = json.loads(path.read_text())
    write_atomic(path.with_name(path.stem + ".md"), markdown(res))


def ratio(x: float | None, base: float | None) -> float | None:
    return None if x is None or not base else x / base


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def bench(args) -> None:
    sets = REQUESTS if args.requests == "both" else (args.requests,)
    runs: dict[str, dict[str, list[dict]]] = {s: {p: [] for p in args.paths} for s in sets}
    for rnd in range(args.rounds):  # alternate the paths so machine load hits all alike
        for requests in sets:
            for path in args.paths:
                got = run_worker(path, requests, args)
                runs[requests][path].append(got)
                what = (f"{got['wall_s']:.1f} s, {got['steady_tok_s']:.0f} steady tok/s, "
                        f"{got['samples_per_prompt']:.1f} samples/prompt" if "wall_s" in got
                        else got.get("skipped") or "FAILED\n" + got["error"])  # fmt: skip
                print(f"round {rnd} {requests:>8} {path:>9}: {what}", flush=True)
    res = {
        "command": shlex.join(["python", *sys.argv]),
        "machine": machine(),
        "threads": args.threads,
        "num_prompts": args.num_prompts,
        "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens,
        "runs": runs,
        "summary": {s: {p: summarize(rs) for p, rs in ps.items()} for s, ps in runs.items()},
    }
    out = Path(args.out)
    write_atomic(out, json.dumps(res, indent=1) + "\n")
    write_atomic(out.with_name(out.stem + ".md"), table := markdown(res))
    print("\n" + table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", choices=(*REQUESTS, "both"), default="both")
    p.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    p.add_argument("--num-prompts", type=int, default=48, help="of the demo's 48 (equal per task)")
    p.add_argument("--rounds", type=int, default=2, help="processes per path and request set")
    p.add_argument("--threads", type=int, default=2, help="threads (cores) per path")
    p.add_argument("--max-new-tokens", type=int, help="override every answer cap (quick runs)")
    p.add_argument("--out", default="benchmarks/results/engines.json", help="JSON; .md beside it")
    p.add_argument("--render", type=Path, help="only rewrite the Markdown of this results JSON")
    p.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        render(args.render)
    elif args.worker:
        worker(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
