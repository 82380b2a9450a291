"""Studies: one module per study (config dataclass → run() → run directory)."""
