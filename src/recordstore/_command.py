"""The ``store`` command's entry point: Ctrl-C while the command is still loading (its
first few tenths of a second) ends it with the one line any other Ctrl-C gives, not
with a traceback through the modules being loaded."""

from __future__ import annotations

import gc
import sys

INTERRUPTED = 130


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("store: interrupted\n")
        raise SystemExit(INTERRUPTED) from None
    try:
        run()
    finally:
        # The command is done: spare the interpreter's last collection, which would walk
        # every object loaded (SQLAlchemy's, hundreds of thousands; ~40 ms) only to find
        # what exiting frees anyway.
        gc.freeze()
