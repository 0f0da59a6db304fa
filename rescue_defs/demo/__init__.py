"""The bundled demo shop: its simulated source systems (raw loaders and their deterministic
data), its nightly pipeline. Not part of the library: rescue_defs/definitions.py uses both
like any team's code location would."""
