"""The book's publishing workflow: it builds with `make book` (the pinned toolchain) and deploys that build's
folder as GitHub Pages, and the check `make lint` runs on it passes here and catches a broken workflow."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "book.yml"
CHECK = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]


def action_steps(job: dict, action: str) -> list[dict]:
    return [step for step in job["steps"] if step.get("uses", "").split("@")[0] == action]


def test_the_workflow_builds_with_make_book_and_deploys_its_html_as_pages():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert [step["run"] for step in build["steps"] if step.get("run", "").startswith("make")] == ["make book"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^BUILD_BOOK := .*jupyter-book build \. ", makefile, re.M)  # the book's root is the repo's
    [upload] = action_steps(build, "actions/upload-pages-artifact")
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and action_steps(deploy, "actions/deploy-pages")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}  # what deploy-pages needs, only there
    assert workflow["permissions"] == {"contents": "read"} and deploy["environment"]["name"] == "github-pages"
    lint = makefile.split("\nlint:")[1].split("\n\n")[0]
    assert " ".join(CHECK[1:]) + " .github/workflows/*.yml" in lint


def test_the_lint_passes_the_workflow_and_refuses_a_broken_one(tmp_path):
    done = subprocess.run([*CHECK, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "book.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:", 1))
    done = subprocess.run([*CHECK, str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "'runs-on' is a required property" in done.stdout
