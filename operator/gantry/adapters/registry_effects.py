"""Executor for registry promotion (tag and copy by digest), and the registry client a Pipeline's
credentials and TLS settings call for; registry errors in the domain's vocabulary."""

from __future__ import annotations

import base64
from typing import Any

from gantry.adapters.effects import Context, EffectFailed, Executor
from gantry.adapters.registry import (
    REQUEST_TIMEOUT,
    RegistryClient,
    RegistryError,
    parse_dockerconfigjson,
    parse_repository,
)
from gantry.adapters.resources import Resources
from gantry.domain.flow.model import Failure, PromoteArtifacts
from gantry.domain.inputs.pipeline import Pipeline
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

FAILURES = {"auth": Failure.UNAUTHORIZED, "collision": Failure.CONFLICT, "invalid": Failure.REFUSED}


def failure_of(error: RegistryError) -> Failure:
    """Unreachable or erroring registries are worth retrying; the rest needs a person or a new version."""
    return Failure.UNAVAILABLE if error.transient else FAILURES.get(error.kind, Failure.REFUSED)


def promote_artifacts(ctx: Context, effect: PromoteArtifacts) -> None:
    try:
        client = ctx.adapters.registry(ctx.namespace, ctx.pipeline)
        for op in effect.tags:
            client.tag(parse_repository(op.source), op.digest, parse_repository(op.repository), op.tag)
            ctx.announce(
                "Normal", Reason.REGISTRY_TAGGED, f"{op.key} -> {op.digest} (artifact {op.artifact})"
            )
    except RegistryError as error:
        raise EffectFailed(failure_of(error), str(error)) from error


def registry_client(
    resources: Resources, namespace: str, pipeline: Pipeline | Problem, timeout: float = REQUEST_TIMEOUT
) -> RegistryClient:
    """With the credentials of the Pipeline's dockerconfigjson Secret and its TLS settings."""
    if isinstance(pipeline, Problem):
        return RegistryClient(timeout=timeout)
    config = pipeline.registry
    credentials: dict[str, tuple[str, str]] = {}
    if config.credentials_secret:
        data = resources.read_secret(namespace, config.credentials_secret)
        where = f"Secret {namespace}/{config.credentials_secret}"
        if data is None:
            raise RegistryError("auth", f"{where} (spec.registry.credentialsSecretRef) does not exist")
        if ".dockerconfigjson" not in data:
            raise RegistryError(
                "auth", f"{where} has no .dockerconfigjson key (type kubernetes.io/dockerconfigjson)"
            )
        try:
            credentials = parse_dockerconfigjson(base64.b64decode(data[".dockerconfigjson"]))
        except (ValueError, KeyError) as bad:
            raise RegistryError("auth", f"{where}: .dockerconfigjson is not valid: {bad}") from bad
    return RegistryClient(credentials=credentials, tls=dict(config.tls), timeout=timeout)


EXECUTORS: dict[type[Any], Executor] = {PromoteArtifacts: promote_artifacts}
