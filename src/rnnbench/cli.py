"""Command-line entry point: ``rnnbench <command> ...``.

Each command lives in ``rnnbench.commands.<name>`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed namespace; returns an exit
status or None). This file only wires them together and turns :class:`RnnbenchError` into
one clear line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from rnnbench import __version__
from rnnbench.errors import RnnbenchError

COMMANDS = [
    "params",
    "data",
    "train",
    "reproduce",
    "report",
    "runs",
    "sweep",
    "baselines",
    "sample",
    "ablate",
]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gives one line (no usage block), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnbench",
        description="Train and compare recurrent units (tanh RNN, LSTM, GRU) on sequence modeling.",
    )
    parser.add_argument("--version", action="version", version=f"rnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"rnnbench.commands.{name}").register(sub)
    return parser


# Commands that pick up where they stopped when run again (finished runs are kept).
RESUMABLE = ("train", "sweep", "reproduce", "ablate")


def _again(args: argparse.Namespace) -> str:
    """After a stop: how to continue, the same command line, for the commands that resume."""
    if getattr(args, "command", None) not in RESUMABLE:
        return ""
    import shlex

    line = shlex.join(["rnnbench", *getattr(args, "argv", [])])
    return f" To continue, run the same command again: {line}"


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in == ["--version"]:  # answer without importing torch for every command's parser
        print(f"rnnbench {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(args_in)  # provenance: the store records the command that trained into it
    # SIGTERM (`timeout`, `kill`, a batch scheduler) stops as cleanly as Ctrl-C: interrupted
    # runs go back to queued and workers are stopped, instead of dying mid-write.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        status = args.func(args)
    except RnnbenchError as exc:
        print(f"rnnbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnbench: interrupted; finished results are saved.{_again(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`rnnbench runs | head`): stop quietly, with no traceback, and
        # keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(status or 0)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
