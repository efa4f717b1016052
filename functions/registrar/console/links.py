"""Links from a model's page to its resources in the Google Cloud console (production only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GOOGLE_CLOUD_CONSOLE = "https://console.cloud.google.com"


def console_links(model: Mapping[str, Any], config) -> dict[str, str]:
    """Templates of links to the model, a version, a Cloud Run service and a pipeline job (`{version}`,
    `{service}`, `{job}` to fill in); none when the registry talks to local emulators, or has no configuration:
    there is no Google Cloud console to link to. Project and region come from the model's Vertex resource name."""
    if config is None or config.vertex_endpoint or config.cloud_run_endpoint:
        return {}
    parts = (model.get("resource_name") or "").split("/")
    if len(parts) < 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "models":
        return {}
    project, region, model_id = parts[1], parts[3], parts[5].split("@")[0]
    return {
        "model": f"{GOOGLE_CLOUD_CONSOLE}/vertex-ai/models/locations/{region}/models/{model_id}?project={project}",
        "version": f"{GOOGLE_CLOUD_CONSOLE}/vertex-ai/models/locations/{region}/models/{model_id}/versions/{{version}}"
                   f"?project={project}",
        "service": f"{GOOGLE_CLOUD_CONSOLE}/run/detail/{region}/{{service}}/metrics?project={project}",
        "pipeline_job": f"{GOOGLE_CLOUD_CONSOLE}/vertex-ai/locations/{region}/pipelines/runs/{{job}}?project={project}",
    }
