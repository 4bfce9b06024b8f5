"""``python -m recordstore`` is the ``store`` command."""

from .cli import main

main()
