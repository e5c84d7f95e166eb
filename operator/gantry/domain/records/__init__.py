"""What Gantry keeps: the production ledger, the EnvironmentLocks, people's decisions."""
