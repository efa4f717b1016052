"""Registrar: the model registry control plane (domain, handlers, unit of work, adapters)."""
