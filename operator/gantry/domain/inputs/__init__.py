"""What Gantry is told: the Pipeline, ReleaseSources and their ephemeral environments, the bake's
analysis, versions from commits, test Job templates, the workloads a stage re-pins.
"""
