"""`python -m layerscope` = the `layerscope` command."""

from .apps.cli import main

main()
