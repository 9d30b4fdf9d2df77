"""File input/output: robust photo decoding, mesh formats, atomic writes."""
