"""The routers of API v1, one per area (each route calls the function the CLI calls)."""
