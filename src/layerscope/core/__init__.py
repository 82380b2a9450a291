"""What every layer uses: errors, the Config dataclass, atomic files, CSV tables, progress
bars and the fault points of the tests. Imports nothing else of layerscope."""
