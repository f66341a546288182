"""ModelServe orchestrator."""
