"""``python -m selfnet`` runs the command line."""

from selfnet.cli import main

main()
