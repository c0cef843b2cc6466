"""Typed errors. Libraries raise these; only the CLI entry point turns them into exit codes.

Every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class TinysplitError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(TinysplitError):
    """The user's input (paths, arguments, data, model) is not usable as given."""

    exit_code = 2


class ManifestError(InputError):
    """A bundle's manifest.json is missing, malformed or fails its schema."""


class UnsupportedModelError(TinysplitError):
    """The model uses a layer or op that int8 TFLite Micro / the code generator cannot run."""

    exit_code = 3


class ConversionError(TinysplitError):
    """A conversion stage (torch -> ONNX -> TF -> TFLite) failed."""

    exit_code = 4


class VerificationError(TinysplitError):
    """A verification check could not be run or its result is below the required threshold."""

    exit_code = 5


class ToolchainError(TinysplitError):
    """A required external tool (cross compiler, emulator, Python extra) is missing or failed."""

    exit_code = 6


class OutputError(TinysplitError):
    """Writing a result failed while running (disk full, an I/O error): what was lost is counted."""

    exit_code = 74


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived. Raised in the main thread (like KeyboardInterrupt, not an Exception,
    so no handler swallows it) so that every ``finally`` and ``with`` cleans up on the way out; the
    CLI exits 143."""
