"""Developer benchmarks, outside the installed package: run from the repository root, `python -m benchmarks.bench`."""
