"""The adaptive batcher of the service (moved here from deployments/service.py)."""
