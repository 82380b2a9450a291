"""`python -m layerscope` = the `layerscope` command."""

from .cli import main

main()
