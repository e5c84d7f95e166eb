"""Gantry's objects and the workloads it touches, one adapter per kind, read and written through
`Kube`: each translates between API objects and the domain's plain data and decides nothing.
`adapters.resources.Resources` combines them for the callers that need several kinds."""
