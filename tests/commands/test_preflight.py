"""One preflight before any GPU is asked for: every model the config reaches (pairs, train and
eval), hub ids gated or missing for this token, storage URIs that cannot be written. Each fault is
one line and exit 2, before Ray starts."""

import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from diversens import models
from diversens.errors import UserError

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def hub_error(cls):
    """A hub error as huggingface_hub raises it (it reads the response's headers)."""
    import httpx2

    request = httpx2.Request("GET", "https://huggingface.co/api/models/x")
    return cls("hub said no", response=httpx2.Response(403, request=request))


def hub_answers(monkeypatch, error=None):
    calls = []

    def auth_check(repo_id, **kwargs):
        calls.append(repo_id)
        if error is not None:
            raise error

    monkeypatch.setattr("huggingface_hub.auth_check", auth_check)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def test_gated_hub_model_is_one_line_naming_the_token(monkeypatch):
    hub_answers(monkeypatch, hub_error(GatedRepoError))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UserError) as e:
        models.check_model("meta-llama/Llama-3.1-8B-Instruct")
    assert "is gated" in str(e.value) and "no HF_TOKEN" in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_hub_model_is_one_line(monkeypatch):
    hub_answers(monkeypatch, hub_error(RepositoryNotFoundError))
    with pytest.raises(UserError, match="not on the Hugging Face hub"):
        models.check_model("no-such-org/no-such-model")


def test_readable_hub_passes_unreachable_is_one_line_and_offline_skips_it(monkeypatch):
    calls = hub_answers(monkeypatch)
    models.check_model("org/model")
    assert calls == ["org/model"]
    hub_answers(monkeypatch, ConnectionError("no network"))
    with pytest.raises(UserError, match="nor in the Hugging Face cache, and the hub is not"):
        models.check_model("org/model")  # resolved before Ray: not a traceback per actor
    calls = hub_answers(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1"):
        models.check_model("org/model")  # not in the cache: refused without asking the hub
    assert calls == []


def test_builtin_and_local_models_never_ask_the_hub(monkeypatch, tmp_path):
    calls = hub_answers(monkeypatch)
    for f in Path(models.resolve_model(models.DEFAULT_EMBEDDER)).iterdir():  # a whole model
        (tmp_path / f.name).symlink_to(f)
    models.check_model(str(tmp_path))
    assert calls == []


def diversens(*args, cwd=ROOT):
    return subprocess.run([str(BIN / "diversens"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={"HF_HUB_OFFLINE": "1", "PATH": str(BIN)})  # fmt: skip


@pytest.mark.parametrize("option", ["--eval.scoring.quality.reference_model",
                                    "--eval.scoring.measure.embedder"])  # fmt: skip
def test_pipeline_preflight_covers_the_eval_models(option, tmp_path):
    proc = diversens("pipeline", "--config", "configs/tiny.yaml", option, "/no/such/model",
                     "-o", str(tmp_path / "run"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        proc.stderr.strip().splitlines()[-1].endswith("model path '/no/such/model' does not exist")
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "logs").exists()


def test_train_stage_alone_needs_the_pairs_of_an_earlier_run(tmp_path):
    proc = diversens("pipeline", "--config", "configs/tiny.yaml", "--stages", "train,eval",
                     "-o", str(tmp_path / "new"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "run the generate-pairs stage first" in proc.stderr
    assert "Traceback" not in proc.stderr
