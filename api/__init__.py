"""The hub's interfaces: FastAPI app factory, routers per resource, auth, errors, web pages and the CLI."""
