"""ModelServe registry."""
