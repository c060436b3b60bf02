""".github/workflows/pipeline.yaml: gates before anything is built, one build, dev before prod, prod behind an
approval, and AWS reached only through OIDC role assumption."""

import tomllib

import yaml
from support import REPO_ROOT

WORKFLOW = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "pipeline.yaml").read_text())
JOBS = WORKFLOW["jobs"]
DEPLOYS = {"deploy-dev": "dev", "deploy-prod": "prod"}


def commands(job: str) -> list[str]:
    return [" ".join(step["run"].split()) for step in JOBS[job]["steps"] if "run" in step]


def uses(job: str, action: str) -> list[dict]:
    return [step.get("with", {}) for step in JOBS[job]["steps"] if step.get("uses", "").startswith(action + "@")]


def test_the_gates_run_before_the_build():
    browser, *gates = commands("test")
    assert "TRIBUTARY_CHROMIUM=" in browser and "google-chrome" in browser  # the console's browser tests run
    assert gates == ["make test", '.venv/bin/cfn-lint "$SAM_TEMPLATE"']
    makefile = (REPO_ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "ruff check" in test_recipe and "checkov" in test_recipe and "pytest" in test_recipe
    assert JOBS["build"]["needs"] == ["test"]


def test_sam_build_runs_once_and_every_stage_deploys_its_artifact():
    builds = [(job, command) for job in JOBS for command in commands(job) if command.startswith("sam build")]
    assert [job for job, _ in builds] == ["build"]
    (upload,) = uses("build", "actions/upload-artifact")
    for job in DEPLOYS:
        (download,) = uses(job, "actions/download-artifact")
        assert (download["name"], download["path"]) == (upload["name"], upload["path"])


def test_dev_then_prod_each_with_its_samconfig_environment():
    assert JOBS["deploy-dev"]["needs"] == ["build"] and JOBS["deploy-prod"]["needs"] == ["deploy-dev"]
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    for job, stage in DEPLOYS.items():
        (deploy,) = [c for c in commands(job) if c.startswith("sam deploy")]
        assert f"--config-env {stage} " in deploy and stage in config
        assert "--template-file .aws-sam/build/template.yaml" in deploy
        assert JOBS[job]["environment"] == stage  # prod's reviewers approve in the GitHub environment


def test_aws_is_reached_only_through_oidc_role_assumption():
    assert "id-token" not in WORKFLOW["permissions"]
    for job, definition in JOBS.items():
        credentials = uses(job, "aws-actions/configure-aws-credentials")
        if job in DEPLOYS:
            assert definition["permissions"]["id-token"] == "write"
            (assume,) = credentials
            assert assume["role-to-assume"] == "${{ vars.PIPELINE_EXECUTION_ROLE }}"
        else:
            assert credentials == [] and "id-token" not in definition.get("permissions", {})
    text = (REPO_ROOT / ".github" / "workflows" / "pipeline.yaml").read_text()
    assert "aws-access-key-id" not in text and "secrets." not in text
