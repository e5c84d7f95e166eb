"""Pipeline parsing: what a valid spec becomes, and which field a bad one names."""

from __future__ import annotations

from typing import Any

import pytest

from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.vocabulary.problems import Problem


def spec(**stage_overrides: Any) -> dict[str, Any]:
    staging = {
        "name": "staging",
        "lock": True,
        "targets": [{"namespace": "shop", "name": "web"}],
        **stage_overrides,
    }
    return {
        "application": "shop",
        "stages": [
            {"name": "dev", "targets": [{"namespace": "dev", "name": "web"}]},
            staging,
            {"name": "prod", "production": True, "targets": [{"namespace": "prod", "name": "web"}]},
        ],
    }


def test_a_valid_pipeline_parses_with_defaults() -> None:
    pipeline = parse_pipeline("shop", spec())
    assert isinstance(pipeline, Pipeline)
    assert [s.name for s in pipeline.stages] == ["dev", "staging", "prod"]
    assert [s.name for s in pipeline.pre_production()] == ["dev", "staging"]
    staging = pipeline.stages[1]
    assert (staging.environment, staging.lock, staging.rollback_on_failure) == ("staging", True, True)
    assert staging.targets[0].kind == "Deployment"
    assert pipeline.summary() == "dev → staging (lock) → prod"


def test_application_defaults_to_the_pipeline_name() -> None:
    raw = spec()
    del raw["application"]
    pipeline = parse_pipeline("billing", raw)
    assert isinstance(pipeline, Pipeline) and pipeline.application == "billing"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"stages": []}, "spec.stages"),
        (spec(targets=[]), "spec.stages[1].targets"),
        (spec(targets=[{"name": "web"}]), "spec.stages[1].targets[0].namespace"),
        (
            spec(targets=[{"namespace": "a", "name": "w", "kind": "DaemonSet"}]),
            "spec.stages[1].targets[0].kind",
        ),
        (spec(targets=[{"namespace": "a"}]), "spec.stages[1].targets[0]"),
        (
            spec(targets=[{"namespace": "a", "name": "w", "selector": {"matchLabels": {"a": "b"}}}]),
            "spec.stages[1].targets[0]",
        ),
        (spec(test={"timeoutSeconds": 5}), "spec.stages[1].test.jobTemplate"),
        (spec(name="dev"), "spec.stages[1].name"),
    ],
)
def test_problems_name_the_field(raw: dict[str, Any], field: str) -> None:
    problem = parse_pipeline("shop", raw)
    assert isinstance(problem, Problem)
    assert problem.field == field
    assert problem.fix


def test_production_must_be_last() -> None:
    raw = spec()
    raw["stages"].reverse()
    problem = parse_pipeline("shop", raw)
    assert isinstance(problem, Problem) and "last stage" in problem.message
