"""Releasing models: the access policy (roles, protected aliases), promotion through Vertex AI aliases with
approval, and continuous delivery per model."""
