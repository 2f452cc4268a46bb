"""Admission control of the service (moved here from deployments/service.py)."""
