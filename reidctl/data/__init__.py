"""Image discovery, decoding and dataset conventions (no model, no database)."""
