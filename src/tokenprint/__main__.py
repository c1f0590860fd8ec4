"""``python -m tokenprint`` runs the CLI."""

from tokenprint.cli.main import main

main()
