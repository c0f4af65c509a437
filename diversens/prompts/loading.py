"""User prompt files (JSONL or Parquet) → the prompts table (docs/design.md §6).

Each row gives either `prompt` (a non-empty string, becomes one user message) or `messages` (a
non-empty list of {role, content} with roles system/user/assistant, ending with a user turn).
Optional: `task` (a registered family, e.g. dat, or custom, the default), `prompt_id` (computed
from task and messages when absent; must be unique), `meta` (object or JSON string). Any other
field is kept inside `meta`, so nothing the user gave is lost and the table's schema stays fixed.
Every rejection is a one-line UserError naming the file, the row (the line number for JSONL, the
1-based row for Parquet) and the field. Texts are judged as a reader sees them (`text.as_read`):
a prompt of only invisible characters is empty, and two prompts without a prompt_id that read
the same are one prompt given twice; the text kept is the one given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diversens import io
from diversens.errors import UserError, shown
from diversens.prompts.config import PromptsConfig
from diversens.prompts.custom import CUSTOM
from diversens.prompts.registry import known_tasks
from diversens.prompts.splits import build_prompts, prompt_id
from diversens.storage import is_uri, read_local
from diversens.text import as_read

ROLES = ("system", "user", "assistant")
COLUMNS = ("prompt_id", "task", "messages", "meta")


def read_prompts(cfg: PromptsConfig, default_split: str | None = None) -> pd.DataFrame:
    """The prompts a job runs on: the user's file, else the split (`default_split` when the user
    named neither), cut to `cfg.limit`."""
    if cfg.file is not None:
        prompts = load_prompts(cfg.file)
    elif (split := cfg.split or default_split) is not None:
        prompts = build_prompts(split, cfg.num_per_task, cfg.seed)
    else:
        raise UserError("give a PROMPTS file or --prompts.split train|eval")
    return prompts if cfg.limit is None else prompts.iloc[: cfg.limit]


def load_prompts(path: str | Path) -> pd.DataFrame:
    """Validate a user prompt file (local or at a URI) and return the prompts table (columns
    `COLUMNS`)."""
    if is_uri(path):
        return read_local(load_prompts, path)
    path = Path(path)
    rows, first_row_of, first_text_of = [], {}, {}
    for where, raw in _rows(path):
        id_given = raw.get("prompt_id") is not None
        row = _prompt_row(raw, f"{path}: {where}")
        text = (row["task"], *((m["role"], as_read(m["content"])) for m in row["messages"]))
        if not id_given and first_text_of.setdefault(text, where) != where:
            raise UserError(
                f"{path}: {where}: the same prompt as {first_text_of[text]} as a reader sees it "
                "(Unicode form, invisible characters and spacing aside); give each a prompt_id "
                "to keep both"
            )
        if row["prompt_id"] in first_row_of:
            raise UserError(
                f"{path}: {where}: field 'prompt_id': duplicate {shown(row['prompt_id'])} "
                f"(first at {first_row_of[row['prompt_id']]})"
            )
        first_row_of[row["prompt_id"]] = where
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no prompts in file")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, record) pairs. JSONL is parsed line by line so errors carry line numbers and
    rows with mixed types reach our checks instead of failing inside Arrow."""
    if io.file_format(path) == "parquet":
        for i, rec in enumerate(io.read_table(path).to_pylist(), start=1):
            yield f"row {i}", rec
        return
    for lineno, rec in io.read_jsonl_rows(path):
        yield f"row {lineno}", rec


def _prompt_row(rec: dict[str, Any], where: str) -> dict[str, Any]:
    prompt, messages = rec.pop("prompt", None), rec.pop("messages", None)
    if prompt is None and messages is None:
        raise UserError(f"{where}: needs a field 'prompt' (string) or 'messages' (list)")
    if prompt is not None and messages is not None:
        raise UserError(f"{where}: field 'messages': give either 'prompt' or 'messages', not both")
    if prompt is not None:
        if not isinstance(prompt, str) or not as_read(prompt):
            raise UserError(f"{where}: field 'prompt': expected a non-empty string, got "
                            f"{shown_empty(prompt)}")  # fmt: skip
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = _check_messages(messages, where)

    task = rec.pop("task", None)
    task = CUSTOM.name if task is None else task
    if task not in known_tasks():
        raise UserError(
            f"{where}: field 'task': {shown(task)} is not one of {', '.join(known_tasks())}"
        )

    pid = rec.pop("prompt_id", None)
    if pid is None:
        pid = prompt_id(task, json.dumps(messages, sort_keys=True, ensure_ascii=False), "user")
    elif isinstance(pid, (int, np.integer)) and not isinstance(pid, bool):
        pid = str(pid)
    elif not isinstance(pid, str) or not pid.strip():
        raise UserError(
            f"{where}: field 'prompt_id': expected a non-empty string, got {shown(pid)}"
        )

    meta = _meta(rec.pop("meta", None), where)
    for k, v in rec.items():  # extra fields travel in meta
        meta.setdefault(k, v)
    meta_json = json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str)
    return {"prompt_id": pid, "task": task, "messages": messages, "meta": meta_json}


def _check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    if isinstance(messages, np.ndarray):
        messages = messages.tolist()
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: field 'messages': expected a non-empty list of messages")
    out = []
    for j, m in enumerate(messages):
        field = f"messages[{j}]"
        if not isinstance(m, dict):
            raise UserError(f"{where}: field '{field}': expected an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise UserError(f"{where}: field '{field}.role': {shown(role)} is not one of {ROLES}")
        if not isinstance(content, str) or not as_read(content):
            raise UserError(f"{where}: field '{field}.content': expected a non-empty string, got "
                            f"{shown_empty(content)}")  # fmt: skip
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise UserError(
            f"{where}: field 'messages[{len(out) - 1}].role': the last message must be 'user'"
        )
    return out


def shown_empty(text: Any) -> str:
    """A text that shows nothing, as a message names it: its escaped characters and why."""
    invisible = isinstance(text, str) and text.strip()
    return shown(text) + (" (only invisible characters and spaces)" if invisible else "")


def _meta(meta: Any, where: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if isinstance(meta, dict):
        return dict(meta)
    if isinstance(meta, str):
        try:
            parsed = json.loads(meta, object_pairs_hook=io.unique_keys)
        except io.DuplicateKey as e:
            raise UserError(f"{where}: field 'meta': {e}") from None
        except json.JSONDecodeError:
            return {"meta": meta}
        return parsed if isinstance(parsed, dict) else {"meta": parsed}
    raise UserError(f"{where}: field 'meta': expected an object or a JSON string")
