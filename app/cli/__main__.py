"""`python -m app.cli …`: the `genapi` command without the installed script."""

from app.cli import main

main()
