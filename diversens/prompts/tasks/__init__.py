"""The task families, one module each; importing this package registers every one of them.

A module here builds its `TaskSpec` and calls `register` on it: nothing else lists the tasks.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
