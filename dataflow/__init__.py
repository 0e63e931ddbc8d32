"""The Bytewax dataflow (`python -m bytewax.run dataflow`). Not built yet: see issue 3."""
