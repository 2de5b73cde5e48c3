"""What runs in the driver: config, search space, orchestration, analysis, report, CLI."""
