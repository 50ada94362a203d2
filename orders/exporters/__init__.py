"""The exporter kinds of SPEC section 7 (file, webhook, approval gate), registered by name."""
