"""A model dir's weights verified before any work, without loading them: every weights file reads
whole (safetensors headers, zip directories, shard indexes), and its tensors are those the
config's architecture has, built on torch's meta device. A damaged or mismatched model is then
one line before Ray starts, not a traceback per actor or a model trained from random values."""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
import zipfile
from importlib import metadata
from pathlib import Path

from diversens.errors import UserError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6; older pickles are not zips
SHOWN = 2  # tensor names a refusal shows of each kind
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # a peft LoRA adapter's
PACKED = ".xz"  # adapter weights as `diversens report --artifacts` keeps them (30% smaller)

Shapes = dict[str, list[int]]


def verify_model(model_dir: Path, label: str, remedy: str, verdicts: Path | None = None) -> None:
    """`model_dir`'s weights read whole and fit its config.json; else a UserError starting with
    `label` (the model as the user named it), ending with `remedy` where the files are damaged.
    `verdicts` is a dir remembering the dirs whose tensors fitted (by path, file sizes and
    times, and the transformers version), so only the first run pays for building the model."""
    tensors = loaded_tensors(model_dir, label, remedy)
    if not (model_dir / "config.json").is_file():
        return  # a LoRA adapter dir: its base is verified on its own
    marker = verdicts / verdict_key(model_dir) if verdicts else None
    if marker is not None and marker.exists():
        return
    check_architecture(model_dir, label, tensors)
    if marker is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()


def loaded_tensors(model_dir: Path, label: str, remedy: str) -> Shapes | None:
    """Every weights file at the top of `model_dir` read whole: each *.safetensors header
    (what vLLM reads), each *.bin that is a zip, each shard an index lists. Returns the shapes
    of the tensors transformers loads (from the safetensors index or model.safetensors);
    None where only .bin weights say (their names are inside pickles)."""
    shapes: dict[str, Shapes] = {}
    for f in sorted(p for p in model_dir.iterdir() if p.is_file()):
        if f.suffix == ".safetensors":
            shapes[f.name] = safetensors_shapes(f, label, remedy)
        elif f.suffix == ".bin":
            check_zip(f, label, remedy)
    if (model_dir / SAFETENSORS_INDEX).is_file():
        weight_map = index_map(model_dir / SAFETENSORS_INDEX, label, remedy)
        for shard in set(weight_map.values()) - set(shapes):  # in a subdir
            shapes[shard] = safetensors_shapes(model_dir / shard, label, remedy)
        for name, shard in weight_map.items():
            if name not in shapes[shard]:
                raise UserError(f"{label}: {SAFETENSORS_INDEX} lists tensor {name!r} in {shard}, "
                                f"which lacks it; {remedy}")  # fmt: skip
        return {k: v for shard in set(weight_map.values()) for k, v in shapes[shard].items()}
    if (model_dir / BIN_INDEX).is_file():
        index_map(model_dir / BIN_INDEX, label, remedy)
    return shapes.get("model.safetensors")


def safetensors_shapes(path: Path, label: str, remedy: str) -> Shapes:
    """The tensors of a safetensors file by name, from its header, which the library checks
    against the file's size (a file cut short fails here, not in a loading actor)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_slice(k).get_shape() for k in f.keys()}
    except SafetensorError as e:
        why = str(e).removeprefix("Error while deserializing header: ")
        raise damaged(path, label, f"{why}; {path.stat().st_size} bytes", remedy) from None
    except OSError as e:
        raise UserError(f"{label}: {path.name}: cannot read ({e.strerror or e})") from None


def check_zip(path: Path, label: str, remedy: str) -> None:
    """A torch .bin in the zip format has its whole central directory (a file cut short loses
    it); a legacy pickle, not a zip, is left to torch."""
    try:
        with open(path, "rb") as f:
            if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
                return
        zipfile.ZipFile(path).close()  # reads the central directory
    except zipfile.BadZipFile as e:
        raise damaged(path, label, f"not a whole zip: {e}", remedy) from None
    except OSError as e:
        raise UserError(f"{label}: {path.name}: cannot read ({e.strerror or e})") from None


def index_map(path: Path, label: str, remedy: str) -> dict[str, str]:
    """A shard index's weight_map (tensor name -> shard file), every shard it names present."""
    try:
        weight_map = json.loads(path.read_bytes()).get("weight_map")
    except (OSError, ValueError, AttributeError) as e:
        raise damaged(path, label, f"not a JSON shard index ({type(e).__name__})", remedy) from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise damaged(path, label, "no weight_map of tensor names to shard files", remedy)
    for shard in sorted(set(weight_map.values())):
        if not (path.parent / shard).is_file():
            raise UserError(f"{label}: shard {shard}, listed in {path.name}, is missing; {remedy}")
    return weight_map


def damaged(path: Path, label: str, why: str, remedy: str) -> UserError:
    return UserError(f"{label}: {path.name} is damaged or cut short ({why}); {remedy}")


def verdict_key(model_dir: Path) -> str:
    """What a verdict holds for: the dir, its files' names, sizes and times, transformers'
    version (which decides the architectures and their tensor names)."""
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                   for f in model_dir.iterdir() if f.is_file())  # fmt: skip
    key = [str(model_dir.resolve()), metadata.version("transformers"), files]
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def check_architecture(model_dir: Path, label: str, tensors: Shapes | None) -> None:
    """config.json names an architecture this transformers has, the model builds from it, and
    `tensors` (None: not known) are exactly the model's: none missing (it would start from
    random values), none it lacks, each of its shape. A config with remote code or a
    quantisation is left to its loader."""
    try:
        raw = json.loads((model_dir / "config.json").read_bytes())
    except (OSError, ValueError):
        raw = None
    if not isinstance(raw, dict):
        raise UserError(f"{label}: config.json is not a JSON object")
    if "auto_map" in raw or "quantization_config" in raw:
        return
    with quiet_transformers():
        model = meta_model(model_dir, label, raw)
        if tensors is not None:
            check_tensors(model, tensors, label, raw.get("model_type"))


def meta_model(model_dir: Path, label: str, raw: dict):
    """The model config.json describes, on the meta device (no memory, no weights): the class
    sentence-transformers loads for its dirs, else the config's first architecture, else the
    model type's causal LM."""
    import torch
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    version = f"transformers {transformers.__version__}"
    model_type = raw.get("model_type")
    if isinstance(model_type, str) and model_type not in CONFIG_MAPPING_NAMES:
        raise UserError(f"{label}: config.json: model_type {model_type[:80]!r} is not an "
                        f"architecture {version} knows")  # fmt: skip
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001 - a config transformers refuses, in any of its ways
        raise UserError(f"{label}: config.json: {first_line(e)}") from None
    names = config.architectures or []
    unknown = [n for n in names if not isinstance(n, str) or not hasattr(transformers, n)]
    if unknown:
        raise UserError(f"{label}: config.json: architectures names {str(unknown[0])[:80]!r}, "
                        f"a model class {version} does not have")  # fmt: skip
    if (model_dir / "modules.json").is_file():
        build = transformers.AutoModel.from_config
    elif names:
        build = getattr(transformers, names[0])
    else:
        build = transformers.AutoModelForCausalLM.from_config
    try:
        with torch.device("meta"):
            return build(config)
    except Exception as e:  # noqa: BLE001 - loading would fail the same way, in every actor
        raise UserError(f"{label}: config.json does not build a model ({first_line(e)})") from None


def check_tensors(model, tensors: Shapes, label: str, model_type) -> None:
    """The checkpoint's tensors against the model's, named as transformers' loader maps them
    (its renamings of old names, a base model's prefix added or dropped), tied weights and the
    keys the class says to ignore excused."""
    from types import SimpleNamespace

    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, rename_source_key

    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    mapping = get_model_conversion_mapping(model)
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    renamings = [m for m in mapping if not isinstance(m, WeightConverter)]
    prefix = model.base_model_prefix
    loaded, unexpected, wrong_shape = set(), set(), []
    for key in sorted(tensors):
        name, pattern = rename_source_key(key, renamings, converters, prefix, expected)
        if name not in expected and key in expected:  # as the loader: only the prefix, then
            name, pattern = rename_source_key(key, [], [], prefix, expected)
        targets = {name}
        if pattern is not None:  # a converter: one checkpoint tensor may make several
            made = next(c for c in converters if pattern in c.source_patterns).target_patterns
            targets = {name.replace(made[0], t) for t in made}
        elif name in expected and tensors[key] != expected[name]:
            wrong_shape.append((key, tensors[key], expected[name]))
        (loaded if name in expected else unexpected).update(targets)
    info = SimpleNamespace(missing_keys=set(expected) - loaded - set(model.all_tied_weights_keys),
                           unexpected_keys=unexpected)  # fmt: skip
    model._adjust_missing_and_unexpected_keys(info)  # the class's own keys to ignore
    fits = f"its weights do not fit config.json ({model_type} as {type(model).__name__})"
    missing, unexpected = info.missing_keys, info.unexpected_keys
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing):,} of the model's tensors are not in them"
                         f"{preview(missing)}")  # fmt: skip
        if unexpected:
            parts.append(f"{len(unexpected):,} of theirs are not in the model{preview(unexpected)}")
        why = " (the model would start from random values)" if missing else ""
        raise UserError(f"{label}: {fits}: {' and '.join(parts)}; give the config.json they "
                        f"were saved with{why}")  # fmt: skip
    if wrong_shape:
        key, have, want = wrong_shape[0]
        more = f" (and {len(wrong_shape) - 1} more)" if len(wrong_shape) > 1 else ""
        raise UserError(f"{label}: {fits}: tensor {key} is {have} in the weights, the config "
                        f"makes it {want}{more}")  # fmt: skip


def preview(keys: set[str]) -> str:
    return f" (e.g. {', '.join(sorted(keys)[:SHOWN])})" if keys else ""


def first_line(e: BaseException) -> str:
    """An exception as one bounded line: transformers' messages run over several."""
    text = " ".join(str(e).split("\n")[0].split())[:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings while a model is built only to be compared (a config's token ids
    out of range, deprecated fields) would break the one-line refusal or the console."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
