"""checkov on what `make checkov` cannot see: the resources that only some parameter values create.

checkov decides a template's Conditions with its parameters' defaults, so `make checkov` (part of
`make test`) never scans the on-failure bucket, the customer-managed key's policy, the aggregator's
stream consumer or the e-mail subscription. Here every one of those options is made the default.
"""

import json
import subprocess
from pathlib import Path

import pytest
from support import REPO_ROOT, TEMPLATE
from template_variants import EVERY_OPTION_ON

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def template_with_defaults(directory: Path, defaults: dict[str, str]) -> Path:
    document = json.loads(json.dumps(TEMPLATE))
    for name, value in defaults.items():
        document["Parameters"][name]["Default"] = value
    path = directory / "template.json"
    path.write_text(json.dumps(document, indent=1))
    return path


@pytest.mark.slow
def test_checkov_passes_with_every_option_switched_on(tmp_path):
    if not CHECKOV.is_file():
        pytest.skip("checkov is not installed: `make checkov` installs it into .venv-checkov")
    template = template_with_defaults(tmp_path, EVERY_OPTION_ON)
    scan = subprocess.run(
        [str(CHECKOV), "--file", str(template), "--framework", "cloudformation", "--compact",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(scan.stdout)
    failed = [(check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]]
    assert failed == [], scan.stdout[-3000:]
    # checkov has checks for these two optional resources (none for a stream consumer or a subscription).
    scanned = {check["resource"].rsplit(".", 1)[-1] for check in report["results"]["passed_checks"]}
    assert {"FailedRecordsBucket", "CustomerManagedKeyUsePolicy"} <= scanned
    assert scan.returncode == 0, scan.stderr[-3000:]
