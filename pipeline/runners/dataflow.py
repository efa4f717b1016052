"""Dataflow as an option of the Vertex AI runner: the run's Dataflow settings (a JSON object, the ``dataflow``
runtime parameter; empty: Beam's DirectRunner inside each component's container) turned into Beam pipeline
arguments for the Beam-based components (ExampleGen, StatisticsGen, Transform, Evaluator).

Settings (all but ``region`` optional; ``temp_location`` defaults to the template's):

    {"region": "europe-west4", "temp_location": "gs://B/dataflow/tmp", "machine_type": "n1-highmem-4",
     "max_workers": 20, "service_account": "dataflow@P.iam.gserviceaccount.com",
     "network": "vpc", "subnetwork": "regions/europe-west4/subnetworks/sub", "disk_size_gb": 100}

The workers run the pipeline image (``--sdk_container_image``): TFX, TFMA and this package's code (the Transform
``preprocessing_fn``, the evaluation metric) must be importable there. Standard library only.
"""
from __future__ import annotations

import json
from typing import Any

# setting -> Beam / Dataflow pipeline option
OPTIONS = {
    "region": "region",
    "temp_location": "temp_location",
    "staging_location": "staging_location",
    "machine_type": "machine_type",
    "max_workers": "max_num_workers",
    "num_workers": "num_workers",
    "disk_size_gb": "disk_size_gb",
    "service_account": "service_account_email",
    "network": "network",
    "subnetwork": "subnetwork",
    "worker_image": "sdk_container_image",
}
INTEGER_SETTINGS = ("max_workers", "num_workers", "disk_size_gb")
# Container arguments the compiled template gives Beam-based components (pipeline/runners/vertex_entrypoint.py
# expands them before TFX parses its own).
SETTINGS_FLAG = "--registrar_dataflow"
WORKER_IMAGE_FLAG = "--registrar_dataflow_worker_image"
TEMP_LOCATION_FLAG = "--registrar_dataflow_temp_location"


class DataflowSettingsError(ValueError):
    """The run's Dataflow settings are not usable; the message names the setting."""


def parse(value: Any) -> dict[str, Any]:
    """The settings from the parameter's value: a JSON object (string or dict); empty or ``{}``: Direct."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DataflowSettingsError(f"dataflow settings are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DataflowSettingsError(f"dataflow settings must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(OPTIONS))
    if unknown:
        raise DataflowSettingsError(f"unknown dataflow setting(s) {unknown}; known: {sorted(OPTIONS)}")
    settings = {k: v for k, v in value.items() if v not in (None, "")}
    for key in INTEGER_SETTINGS:
        if key in settings:
            if isinstance(settings[key], bool) or not isinstance(settings[key], int) or settings[key] < 1:
                raise DataflowSettingsError(f"dataflow {key}={settings[key]!r} must be a positive integer")
    for key, setting in settings.items():
        if key not in INTEGER_SETTINGS and not isinstance(setting, str):
            raise DataflowSettingsError(f"dataflow {key}={setting!r} must be a string")
    if settings and "region" not in settings:
        raise DataflowSettingsError("dataflow settings need a region (Dataflow jobs are regional)")
    return settings


def beam_args(value: Any, *, default_temp_location: str = "", worker_image: str = "") -> list[str]:
    """Beam arguments for the settings: none for Direct, else ``--runner=DataflowRunner`` and the options."""
    settings = parse(value)
    if not settings:
        return []
    settings.setdefault("temp_location", default_temp_location)
    if worker_image:
        settings.setdefault("worker_image", worker_image)
    if not settings["temp_location"]:
        raise DataflowSettingsError("dataflow needs a temp_location (gs://...)")
    args = ["--runner=DataflowRunner"]
    args += [f"--{OPTIONS[key]}={settings[key]}" for key in OPTIONS if key in settings]
    if "worker_image" in settings:
        args.append("--experiments=use_runner_v2")  # custom worker containers need Runner v2
    return args


def expand_container_args(argv: list[str]) -> list[str]:
    """A component container's argv with the template's Dataflow flags (``--flag value`` or ``--flag=value``)
    replaced by the Beam arguments they mean."""
    flags = {SETTINGS_FLAG: "", WORKER_IMAGE_FLAG: "", TEMP_LOCATION_FLAG: ""}
    rest, i = [], 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name in flags:
            if not eq:  # the value is the next element (a compiled placeholder, possibly empty)
                i += 1
                value = argv[i] if i < len(argv) else ""
            flags[name] = value
        else:
            rest.append(argv[i])
        i += 1
    extra = beam_args(flags[SETTINGS_FLAG], default_temp_location=flags[TEMP_LOCATION_FLAG],
                      worker_image=flags[WORKER_IMAGE_FLAG])
    if extra:  # Dataflow's temp location replaces the Direct one given to every component
        rest = [a for a in rest if not a.startswith("--temp_location=")]
    return rest + extra
