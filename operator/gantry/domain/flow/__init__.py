"""A Release's way through its stages: the router (release), its tracks (stages, production, registry,
guard), the steps they share, and the data a tick works on (model, draft).
"""
