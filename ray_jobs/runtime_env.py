"""Print ray_jobs/runtime_env.yaml as JSON for `ray job submit --runtime-env-json`, with HF_TOKEN
from this shell added to its env_vars when set:

    export HF_TOKEN=hf_...
    ray job submit --working-dir . --runtime-env-json "$(python ray_jobs/runtime_env.py)" -- ...

`ray job submit` sends no local environment, takes --runtime-env or --runtime-env-json but not
both, and Ray expands "${VAR}" in env_vars on the cluster's nodes, not here. The job's env_vars
reach its driver, every actor and every Ray Train worker (a task's own env_vars are merged with
them). The token is never written to a file. Needs only PyYAML (no Ray, no torch).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

RUNTIME_ENV = Path(__file__).resolve().with_name("runtime_env.yaml")
FORWARDED = ("HF_TOKEN",)


def runtime_env(environ: dict[str, str] | None = None, path: Path = RUNTIME_ENV) -> dict:
    environ = os.environ if environ is None else environ
    env = yaml.safe_load(path.read_text()) or {}
    env_vars = {**env.get("env_vars", {}), **{k: environ[k] for k in FORWARDED if environ.get(k)}}
    if env_vars:
        env["env_vars"] = env_vars
    return env


def main() -> int:
    env = runtime_env()
    if "HF_TOKEN" not in env.get("env_vars", {}):
        print("runtime_env.py: HF_TOKEN is not set: gated models (Llama-3.1) will not download",
              file=sys.stderr)  # fmt: skip
    print(json.dumps(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
