"""Load a user's export spec from ``path/to/file.py[:function]`` or ``package.module[:function]``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from tinysplit.errors import InputError

DEFAULT_FUNCTION = "build"


def _exited(ref: str, when: str, e: SystemExit) -> str:
    code = "" if e.code is None else repr(e.code)
    return (f"'{ref}' called sys.exit({code}) while {when}; an export spec must not exit the process: make it define "
            "a function returning an ExportSpec and keep scripts' command-line code under "
            "`if __name__ == \"__main__\":`")


def load_spec_factory(ref: str) -> Any:
    """Return the callable named by ``ref``; the default function name is ``build``."""
    target, _, func = ref.partition(":")
    func = func or DEFAULT_FUNCTION
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise InputError(f"module path '{target}' does not exist; pass a Python file that defines "
                             f"{func}() returning a tinysplit.exporter.ExportSpec (FILE.py[:FUNCTION])")
        mod_name = f"tinysplit_user_spec_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except SystemExit as e:
            raise InputError(_exited(target, "importing it", e)) from None
        except Exception as e:
            raise InputError(f"importing '{target}' failed: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise InputError(f"module '{target}' cannot be imported ({e}); pass FILE.py[:FUNCTION] or an "
                             "importable package.module[:FUNCTION]") from None
        except SystemExit as e:
            raise InputError(_exited(target, "importing it", e)) from None
        except Exception as e:
            raise InputError(f"importing '{target}' failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise InputError(f"'{target}' has no function '{func}'; define {func}() returning an ExportSpec, "
                         "or name the function after a colon (FILE.py:FUNCTION)")
    return fn


def call_spec_factory(fn: Any, ref: str) -> Any:
    """``fn()``, with what it raises (or a sys.exit) as an InputError naming ``ref``."""
    try:
        return fn()
    except SystemExit as e:
        raise InputError(_exited(ref, "building the spec", e)) from None
    except Exception as e:
        raise InputError(f"'{ref}' raised {type(e).__name__}: {e}") from None


def load_export_spec(ref: str) -> Any:
    from tinysplit.exporter.spec import ExportSpec

    spec = call_spec_factory(load_spec_factory(ref), ref)
    if not isinstance(spec, ExportSpec):
        raise InputError(f"'{ref}' returned {type(spec).__name__}; it must return tinysplit.exporter.ExportSpec")
    return spec
