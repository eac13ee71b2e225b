"""pytest plugin of the conformance kit (placeholder: being written)."""
