# The Gantry operator image. Build: docker build -t localhost/gantry:0.1.0 . (the chart's default image)
# Runs as a non-root user and works with a read-only root filesystem (the Helm chart mounts
# emptyDirs at /tmp and /var/cache/gantry/git).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# git: GitPython drives the git binary (version tags, HOT-<n> branches, the wiki). procps: pgrep,
# which GitPython uses to kill a git command that outlives its timeout together with its helpers
# (git-remote-https holds the pipes open after git itself is killed).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates procps \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 gantry \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin gantry
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    GANTRY_GIT_CACHE=/var/cache/gantry/git
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["gantry"]
CMD ["run"]
