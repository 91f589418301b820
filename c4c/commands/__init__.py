"""CLI commands grouped by pipeline stage; each module has register(app)."""
