"""``python -m emoflow``: the same command line as the ``emoflow`` script."""

from emoflow.cli import main

main()
