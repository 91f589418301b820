"""Pipeline stages; each exposes ``run(config) -> result`` so tests can call it without a shell."""
