"""ModelServe model_server."""
