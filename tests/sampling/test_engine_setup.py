"""What a vLLM engine actor sets up before vLLM starts, without starting it:
- its environment: on CPU the engine core in-process; on GPU `sampling.reproducible` turns on
  vLLM's batch-invariant mode, refused in one line on a GPU its kernels do not cover, and the
  option is part of the resume key (it changes the rows);
- its model: a hub id is downloaded first (only the files loading it reads), a failure that may
  pass is tried again, and the last one is one line."""

import types

import pytest

from diversens import models
from diversens.config import config_hash
from diversens.errors import UserError
from diversens.sampling import SamplingConfig
from diversens.sampling.config import POOL_FIELDS
from diversens.sampling.engines import EngineStartError, vllm_environment


def test_reproducible_turns_on_batch_invariance_on_a_gpu_only():
    on, off = SamplingConfig(reproducible=True), SamplingConfig()
    assert vllm_environment(on, (9, 0)) == {"VLLM_BATCH_INVARIANT": "1"}
    assert vllm_environment(on, (8, 6)) == {"VLLM_BATCH_INVARIANT": "1"}  # A10G
    assert vllm_environment(off, (9, 0)) == {}  # EngineCore stays a child process
    cpu = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    assert vllm_environment(on, None) == vllm_environment(off, None) == cpu


def test_reproducible_on_a_gpu_without_batch_invariant_kernels_is_one_line():
    with pytest.raises(EngineStartError) as caught:
        vllm_environment(SamplingConfig(reproducible=True), (7, 5))  # T4
    message = str(caught.value)
    assert "\n" not in message and "option sampling.reproducible" in message and "7.5" in message
    assert caught.value.exit_code == 2
    assert vllm_environment(SamplingConfig(), (7, 5)) == {}  # without it, any GPU


def test_reproducible_is_part_of_the_resume_key():
    assert "reproducible" not in POOL_FIELDS
    on, off = SamplingConfig(reproducible=True), SamplingConfig()
    assert config_hash(on.identity()) != config_hash(off.identity())


LLAMA_REPO = [
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "model.safetensors.index.json", "LICENSE", "README.md",
    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
    "original/consolidated.00.pth", "original/params.json", "original/tokenizer.model",
]  # fmt: skip


def test_a_hub_model_downloads_the_files_loading_it_reads():
    files = models.hub_model_files(LLAMA_REPO, set())
    assert files == [f for f in LLAMA_REPO if not f.startswith("original/")]
    # some repos ship .bin beside .safetensors, or a consolidated file the index does not name
    shards = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    more = [*LLAMA_REPO, "pytorch_model.bin", "consolidated.safetensors"]
    assert models.hub_model_files(more, shards) == files
    old = ["config.json", "tokenizer.json", "pytorch_model.bin", "training_args.bin"]
    assert models.hub_model_files(old, set()) == old
    assert models.hub_model_files(["config.json", "weights/model.safetensors"], set()) is None


class Flaky(Exception):
    def __init__(self, status: int | None):
        super().__init__(f"HTTP {status}\nfrom the hub")
        self.response = types.SimpleNamespace(status_code=status)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """`_download_hub_model` raising `hub.errors` in turn, then returning `hub.dir`; the waits
    between tries are recorded, not waited."""
    hub = types.SimpleNamespace(errors=[], calls=0, waits=[], dir=tmp_path)

    def download(repo_id):
        hub.calls += 1
        if hub.errors:
            raise hub.errors.pop(0)
        return hub.dir

    monkeypatch.setattr(models, "_download_hub_model", download)
    monkeypatch.setattr(models.time, "sleep", hub.waits.append)
    return hub


def test_a_download_the_network_broke_off_is_tried_again(hub):
    hub.errors = [Flaky(503), ConnectionError("reset by peer")]
    assert models.download_hub_model("org/model") == hub.dir
    assert hub.calls == 3 and hub.waits == [models.HUB_RETRY_WAIT_S, 2 * models.HUB_RETRY_WAIT_S]


def test_a_download_that_keeps_failing_is_one_line_after_its_tries(hub):
    hub.errors = [Flaky(500), Flaky(429), Flaky(502), Flaky(503)]
    with pytest.raises(models.ModelDownloadError) as caught:
        models.download_hub_model("org/model")
    assert hub.calls == models.HUB_DOWNLOAD_TRIES == 3
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model 'org/model': downloading it")
    assert "(3 tries): Flaky: HTTP 502 from the hub" in message
    assert caught.value.exit_code == 1  # the network's fault, not the user's


def test_a_refused_download_is_not_tried_again(hub):
    import httpx2
    from huggingface_hub.errors import GatedRepoError

    request = httpx2.Request("GET", "https://huggingface.co/api/models/org/model")
    hub.errors = [GatedRepoError("restricted", response=httpx2.Response(403, request=request))]
    with pytest.raises(UserError, match="model 'org/model' is gated") as caught:
        models.download_hub_model("org/model")
    assert hub.calls == 1 and caught.value.exit_code == 2
    hub.errors = [Flaky(400)]
    with pytest.raises(models.ModelDownloadError, match=r"\(1 try\): Flaky: HTTP 400"):
        models.download_hub_model("org/model")
    assert hub.calls == 2 and hub.waits == []


def test_only_a_hub_id_is_downloaded(hub, tmp_path):
    local = tmp_path / "model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert models.local_model(str(local)) == str(local.resolve())
    assert hub.calls == 0
    assert models.local_model("org/model") == str(hub.dir)
    assert hub.calls == 1
