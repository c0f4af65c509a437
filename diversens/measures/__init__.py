"""Length and diversity measures, each registered by the module that computes it.

Importing this package imports every module in it, so the registry is complete whoever asks:
adding a measure is adding a module here that calls `register` (see `registry.Measure`).
"""

import importlib
import pkgutil

from diversens.measures.registry import (
    MEASURES,
    Measure,
    Texts,
    check,
    names,
    needs_embedder,
    register,
    resolve,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MEASURES", "Measure", "Texts", "check", "names", "needs_embedder", "register",
           "resolve"]  # fmt: skip
