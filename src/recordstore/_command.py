"""The ``store`` command's entry point: Ctrl-C while the command is still loading (its
first few tenths of a second) ends it with the one line any other Ctrl-C gives, not
with a traceback through the modules being loaded."""

from __future__ import annotations

import sys

INTERRUPTED = 130


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("store: interrupted\n")
        raise SystemExit(INTERRUPTED) from None
    run()
