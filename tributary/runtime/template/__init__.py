"""SAM template loading: CloudFormation short tags, parameters, conditions, intrinsics and Globals.

This resolves what a local run needs, not everything CloudFormation does:

    documents.py   YAML with short tags, `--parameter-overrides`, `TemplateError`
    model.py       `Template`: parameters, conditions, Globals, references and attributes
    intrinsics.py  `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::If`... and the pseudo parameters' `AWS::NoValue`
    naming.py      physical names and ARNs in the one local account (`ACCOUNT_ID`, `REGION`)

Physical names are the template's name properties or, like CloudFormation, generated from the
stack name and logical id. Attributes only known once a resource exists (a queue's URL, a table's
stream ARN) are filled in by `tributary.runtime.resources` through `Template.record_attributes`.
"""

from tributary.runtime.template.documents import TemplateError, load_yaml, parse_parameter_overrides
from tributary.runtime.template.model import FunctionSpec, Resource, Template, merge_globals
from tributary.runtime.template.naming import ACCOUNT_ID, REGION

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "FunctionSpec",
    "Resource",
    "Template",
    "TemplateError",
    "load_yaml",
    "merge_globals",
    "parse_parameter_overrides",
]
