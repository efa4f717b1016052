"""Deployments: serving a registered model version on Cloud Run — requests, their handlers and follow-ups
(precondition, Cloud Run, outcome), service naming, presets, the container spec, and the endpoint read model.

Rules kept here (the predecessors broke each of them, see seeds/000 and seeds/001):
- the Cloud Run service name is derived in ONE place (`naming.service_name_for`); nothing else derives one;
- before anything is applied, the version must exist in Vertex AI (`registry.precondition`); a deleted version
  is refused with the message operators know, and nothing is uploaded or deployed;
- a model updates only its own services (labels in Cloud Run, endpoint documents in Firestore);
- whether a version is deployed is Cloud Run's answer (`kernel.serving.ServingSnapshot`), never a stored guess.
"""
