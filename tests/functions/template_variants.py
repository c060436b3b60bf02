"""The template as a stack would be created from it under given parameter values.

Conditions are decided and intrinsic functions resolved by the local runtime's template loader (the
project's one resolver); names and ARNs of resources are its local predictions, which is all that
comparing one resource with another needs.
"""

import copy
from typing import Any

from support import REPO_ROOT, TEMPLATE

from tributary.runtime.template import Template

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# Parameter values that create every resource the defaults leave out.
EVERY_OPTION_ON = {
    "KmsKeyArn": KEY_ARN,
    "OnFailureDestination": "s3",
    "AggregatorFanOut": "enhanced",
    "StreamMode": "ON_DEMAND",
    "AlarmEmail": "ops@example.com",
}


def deployed(**parameters: str) -> Template:
    """The template with `parameters` overriding the defaults."""
    return Template(copy.deepcopy(TEMPLATE), REPO_ROOT, parameters)


def properties(template: Template, logical_id: str) -> dict[str, Any]:
    return template.resolve(template.resources[logical_id].properties)


def resolved_of_type(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    """Resolved properties of every resource of `kind` that the parameters create."""
    return {
        logical_id: template.resolve(resource.properties)
        for logical_id, resource in template.resources.items()
        if resource.type == kind
    }


def function_properties(template: Template) -> dict[str, dict[str, Any]]:
    """Every function's resolved properties, Globals applied."""
    return {spec.logical_id: template.resolve(spec.properties) for spec in template.functions()}
