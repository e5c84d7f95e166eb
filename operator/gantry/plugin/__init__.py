"""kubectl gantry: the kubectl plugin (console script kubectl-gantry)."""
