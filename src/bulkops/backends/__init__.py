"""The backends: one module per database behind the protocols of ``base``."""
