"""The CEL library's compiled module, loaded without the `cel` package's __init__.

Two distributions install a `cel` package: the CEL library (common-expression-language) and
xds-protos (the cel/expr protos the mesh's Envoy types carry). Whichever installs last owns
cel/__init__.py. The library's imports its command line (typer, rich, prompt_toolkit): about 0.5 s of
CPU on every control plane start and every command that parses a definition, for nothing the engine
uses; xds-protos's is empty and would hide compile() from `import cel`. The extension module `cel.cel`
is the library's alone, so it is loaded here straight from its file, which works whichever owns the
package. A later `import cel...` elsewhere finds it in sys.modules and loads the package around it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXTENSION = "cel.cel"


def load_extension() -> ModuleType:
    """`cel.cel`, from sys.modules when something imported it already, else from its file."""
    loaded = sys.modules.get(EXTENSION)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("cel")  # finds the package without running its __init__
    for folder in (package.submodule_search_locations or []) if package is not None else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"cel{suffix}"
            if path.is_file():
                return _load(path)
    # Not laid out as expected (another packaging of the library): the ordinary import, at its cost.
    return importlib.import_module(EXTENSION)


def _load(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(EXTENSION, str(path))
    spec = importlib.util.spec_from_file_location(EXTENSION, path, loader=loader)
    if spec is None:
        return importlib.import_module(EXTENSION)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[EXTENSION] = module
    return module
