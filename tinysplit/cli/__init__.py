"""The ``tinysplit`` command. The only place that exits the process or maps errors to exit codes.

Commands live in this package's modules (export, demo, firmware, serve), one ``COMMANDS`` table
each, and in the methods' own command modules (``tinysplit.methods.METHODS[...].commands``). This
module imports them; none of them imports it back, and no stage package imports the CLI.

Exit codes: 0 success; 2 bad input or usage; 3 unsupported model; 4 conversion failed;
5 verification failed; 6 toolchain or install extra missing; 70 internal error; 74 writing output
failed while running (disk full, I/O error); 130 interrupted (SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable

from tinysplit import __version__
from tinysplit.errors import TinysplitError
from tinysplit.extras import missing_extra_error

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

CommandTable = dict[str, tuple[Callable, Callable]]

# The CLI's own command modules, in the order `tinysplit --help` lists them (the methods' verbs come
# from METHODS; a verb defined twice is refused).
COMMAND_MODULES = ("tinysplit.cli.demo", "tinysplit.cli.export", "tinysplit.cli.firmware", "tinysplit.cli.serve")


def _collect() -> CommandTable:
    from tinysplit.methods import METHODS

    modules = [*COMMAND_MODULES, *(m.commands for m in METHODS.values() if m.commands)]
    table: CommandTable = {}
    for name in modules:
        for verb, entry in importlib.import_module(name).COMMANDS.items():
            if verb in table:
                raise RuntimeError(f"command '{verb}' is defined twice (again in {name})")
            table[verb] = entry
    return table


COMMANDS: CommandTable = _collect()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinysplit", description="Split-computing models to microcontroller "
                                "firmware (int8, bit-exact with TFLite Micro) and a host tail server.")
    p.add_argument("--version", action="version", version=f"tinysplit {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return p


def _fail(e: TinysplitError, verbose: bool) -> int:
    if verbose:
        logging.exception("error")
    print(f"tinysplit: error: {e}", file=sys.stderr)
    return e.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][1](args)
    except TinysplitError as e:
        return _fail(e, args.verbose)
    except KeyboardInterrupt:
        print("tinysplit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        missing = missing_extra_error(e.name) if isinstance(e, ModuleNotFoundError) else None
        if missing is not None:  # an install extra this command needs is not installed
            return _fail(missing, args.verbose)
        # a bug: say so, keep the traceback one flag away
        if args.verbose:
            logging.exception("internal error")
        print(f"tinysplit: internal error: {type(e).__name__}: {e} (rerun with -v for the traceback; "
              "please report it)", file=sys.stderr)
        return EXIT_INTERNAL
