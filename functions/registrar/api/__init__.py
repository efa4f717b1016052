"""registry_api: the registry over HTTP (schemas/openapi.yaml). `app.create_app` builds it; one module per resource."""
