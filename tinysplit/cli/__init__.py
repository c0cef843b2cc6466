"""The ``tinysplit`` command. The only place that exits the process or maps errors to exit codes.

Commands live in this package's modules (export, demo, firmware, serve), one ``COMMANDS`` table
each, and in the methods' own command modules (``tinysplit.methods.METHODS[...].commands``). This
module imports them; none of them imports it back, and no stage package imports the CLI.

Exit codes: 0 success; 2 bad input or usage; 3 unsupported model; 4 conversion failed;
5 verification failed; 6 toolchain or install extra missing; 70 internal error; 74 writing output
failed while running (disk full, I/O error); 130 interrupted (SIGINT); 141 the reader of stdout went
away (`tinysplit ops | head`); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import threading
from typing import Callable

from tinysplit import __version__
from tinysplit import children
from tinysplit.errors import Terminated, TinysplitError
from tinysplit.extras import missing_extra_error

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away
EXIT_TERMINATED = 143  # 128 + SIGTERM
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

CommandTable = dict[str, tuple[Callable, Callable]]

# The CLI's own command modules, in the order `tinysplit --help` lists them (the methods' verbs come
# from METHODS; a verb defined twice is refused).
COMMAND_MODULES = ("tinysplit.cli.demo", "tinysplit.cli.export", "tinysplit.cli.firmware", "tinysplit.cli.serve",
                   "tinysplit.cli.keys")


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


_terminated_by: str | None = None


def _on_terminate(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP: stop the child processes (emulators, build tools) at once, then unwind so that
    temporary folders and open files are cleaned up on the way out: raise Terminated, or, inside
    ``asyncio.run``, take its Ctrl-C path (cancel the main task, whose ``finally`` blocks run, then
    KeyboardInterrupt), since asyncio would swallow an exception raised inside one of its callbacks.
    Further signals are ignored meanwhile: the cleanup is not cut short."""
    global _terminated_by
    for sig in TERMINATING_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _terminated_by = signal.Signals(signum).name
    children.stop_all()
    try:
        asyncio.get_running_loop()
        on_sigint = signal.getsignal(signal.SIGINT)
    except RuntimeError:
        on_sigint = None
    if callable(on_sigint) and on_sigint is not signal.default_int_handler:  # asyncio.run's own handler
        on_sigint(signal.SIGINT, frame)
        return
    raise Terminated(_terminated_by)


def _install_terminate_handlers() -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_terminate) for sig in TERMINATING_SIGNALS}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    global _terminated_by
    _terminated_by = None
    previous = _install_terminate_handlers()
    try:
        return _run(args)
    finally:
        children.stop_all()  # a child a failed command left behind does not outlive it
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command][1](args)
    except TinysplitError as e:
        return _fail(e, args.verbose)
    except (KeyboardInterrupt, Terminated):
        if _terminated_by is not None:
            print(f"tinysplit: terminated ({_terminated_by}); its child processes were stopped and its temporary "
                  "folders removed", file=sys.stderr)
            return EXIT_TERMINATED
        print("tinysplit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError as e:
        if not _stdout_closed():
            return _internal(e, args.verbose)
        # the reader of our output went away (`tinysplit ops | head`): stop quietly, as a shell's
        # commands do on SIGPIPE; stdout goes to /dev/null so the interpreter's last flush is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as e:
        missing = missing_extra_error(e.name) if isinstance(e, ModuleNotFoundError) else None
        if missing is not None:  # an install extra this command needs is not installed
            return _fail(missing, args.verbose)
        return _internal(e, args.verbose)


def _internal(e: Exception, verbose: bool) -> int:
    """A bug: say so, keep the traceback one flag away."""
    if verbose:
        logging.exception("internal error")
    print(f"tinysplit: internal error: {type(e).__name__}: {e} (rerun with -v for the traceback; "
          "please report it)", file=sys.stderr)
    return EXIT_INTERNAL


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll says POLLERR on its write end)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False
