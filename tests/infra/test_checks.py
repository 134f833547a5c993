"""cdk-nag's AWS Solutions pack and cfn-lint on the synthesized templates."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.infra.conftest import Synth


def _errors(synth: Synth) -> list[dict[str, Any]]:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    return [v for plugin in report["pluginReports"] for v in plugin["violations"] if v["severity"] == "error"]


def test_cdk_nag_aws_solutions_reports_no_errors_when_synthesized(dev: Synth, prod: Synth):
    # Synthesis itself fails on an unacknowledged error; the report confirms it for both stages.
    assert _errors(dev) == []
    assert _errors(prod) == []


def test_every_acknowledgment_names_its_reason_when_synthesized(dev: Synth, prod: Synth):
    acknowledged = 0
    for synth in (dev, prod):
        for template in (synth.stateful, synth.stateless):
            for resource in template["Resources"].values():
                for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                    acknowledged += 1
                    assert len(rule.get("reason", "")) >= 20, rule
    assert acknowledged > 0


def test_cfn_lint_finds_no_errors_when_templates_are_synthesized(dev: Synth, prod: Synth):
    templates = [str(p) for p in dev.templates + prod.templates]
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "json", "--regions", "us-east-1", "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)[:3000]
