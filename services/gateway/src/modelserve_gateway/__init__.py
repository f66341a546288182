"""ModelServe gateway."""
