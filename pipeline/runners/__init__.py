"""One runner per orchestrator: local (LocalDagRunner) and Vertex AI (KubeflowV2DagRunner)."""
