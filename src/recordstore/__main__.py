"""``python -m recordstore`` is the ``store`` command."""

from ._command import main

main()
