"""schemathesis hooks for test_api_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

`described_data_acceptance` is schemathesis's positive_data_acceptance with one allowance, and only one: a request
the schemas allow may be refused with 400 when the refusal names the field of a rule openapi.yaml documents as one
JSON Schema cannot say (it compares two fields, or depends on stored documents or on the clock). Any other
refusal of schema-valid data fails, as positive_data_acceptance would.
"""

from __future__ import annotations

import json
import re

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

# operation label -> the fields whose rules the descriptions say JSON Schema cannot express
DOCUMENTED_RULES: dict[str, set[str]] = {
    # an opaque token: only one this API issued for the same query
    "GET /models": {"page_token"},
    "GET /schedules": {"page_token"},
    "GET /console/": {"page_token"},
    # min_instances <= max_instances when both are given
    "POST /models/{model_id}/versions/{version_id}:deploy": {"min_instances"},
    # two different versions; b another version than a, of a model of the same type
    "GET /models/{model_id}/compare": {"versions"},
    "GET /compare": {"b"},
    "GET /console/models/{model_id}/compare": {"versions"},
    # the instances must carry the features the served model's signature expects
    "POST /models/{model_id}/versions/{version_id}:predict": {"instances"},
    "POST /models/{model_id}:predict": {"instances"},
    # a once datetime in the future; the source run must exist, carry a config and name a model
    "POST /schedules": {"scheduled_datetime", "source_training_run_id", "model_name"},
    # the timing after the edit, counting the stored schedule's fields, must be complete (and a once in the future)
    "PATCH /schedules/{schedule_id}": {"schedule_time", "minute", "day_of_week", "day_of_month",
                                       "scheduled_datetime"},
}


def _refused_field(response) -> str | None:
    if response.status_code != 400:
        return None
    try:
        return json.loads(response.content)["error"].get("parameter")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    # A console page (HTML) names it on its alert.
    found = re.search(r'role="alert" data-parameter="([^"]+)"', response.content.decode(errors="replace"))
    return found.group(1) if found else None


@schemathesis.check
def described_data_acceptance(ctx, response, case):
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _refused_field(response) in DOCUMENTED_RULES.get(case.operation.label, set()):
            return None
        raise
