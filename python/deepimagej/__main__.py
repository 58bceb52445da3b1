"""``python -m deepimagej`` = the ``deepimagej`` command."""

from deepimagej.cli import main

main()
