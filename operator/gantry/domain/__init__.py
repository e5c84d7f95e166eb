"""Pure models and decisions: no I/O, no clocks (time is passed in), no Kubernetes client."""
