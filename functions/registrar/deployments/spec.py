"""What a serving container looks like: its image (by retrieval algorithm), environment and labels."""

from __future__ import annotations

from collections.abc import Mapping

from registrar.deployments.settings import Settings
from registrar.kernel.errors import PermanentError
from registrar.kernel.ports import ServiceSpec
from registrar.kernel.serving import service_labels

IMAGE_NAMES = {"brute_force": "tf-serving-native", "scann": "scann-server"}
DEFAULT_IMAGE_REPOSITORY = "registrar-serving"  # terraform: var.artifact_registry_repository
RETRIEVAL_ALGORITHMS = tuple(IMAGE_NAMES)


def serving_image_for(retrieval_algorithm: str | None, *, project: str, region: str,
                      overrides: Mapping[str, str] | None = None) -> str:
    """The one place an image is chosen: brute force → native TF Serving, ScaNN → the scann server.
    `overrides` (algorithm → image) come from the configuration (`Config.run_images`)."""
    algorithm = retrieval_algorithm or "brute_force"
    if algorithm not in IMAGE_NAMES:
        raise PermanentError(f"unknown retrieval algorithm {algorithm!r} (known: {', '.join(RETRIEVAL_ALGORITHMS)})",
                             kind="invalid")
    return ((overrides or {}).get(algorithm)
            or f"{region}-docker.pkg.dev/{project}/{DEFAULT_IMAGE_REPOSITORY}/{IMAGE_NAMES[algorithm]}:latest")


def bundle_path_for(model_path: str) -> str:
    """Fallback only (the run's `serving_bundle_uri` comes first): the pipeline writes the bundle of
    `<base>/<version>/` to `<base>_serving_bundle/<version>/` (pipeline/components.py `bundle_base`)."""
    base, _, version = model_path.rstrip("/").rpartition("/")
    return f"{base}_serving_bundle/{version}/"


def build_spec(*, model_id: str, version_id: str, service_id: str, settings: Settings, model_path: str,
               bundle_path: str | None, retrieval_algorithm: str | None, project: str, region: str,
               service_account: str = "", image_overrides: Mapping[str, str] | None = None) -> ServiceSpec:
    algorithm = retrieval_algorithm or "brute_force"
    image = serving_image_for(algorithm, project=project, region=region, overrides=image_overrides)
    model_path = model_path.rstrip("/") + "/"
    env = {
        "MODEL_NAME": model_id,
        "MODEL_VERSION": version_id,
        "MODEL_PATH": model_path,
        "BUNDLE_PATH": bundle_path or bundle_path_for(model_path),
        "RETRIEVAL_ALGORITHM": algorithm,
    }
    return ServiceSpec(
        service_id=service_id, image=image, env=env, labels=service_labels(model_id, version_id),
        min_instances=settings.min_instances, max_instances=settings.max_instances, memory=settings.memory,
        cpu=settings.cpu, concurrency=settings.concurrency, timeout_seconds=settings.timeout_seconds,
        service_account=service_account,
        description=f"Serves version {version_id} of model {model_id} (managed by Registrar).",
    )
