"""What runs in the driver: config, search space, orchestration, analysis, report; its two doors,
the command line (`python -m study.run`) and Python (`study.run_study`, `study.load`: study/api.py).

The Python door is imported on first use: `python -m study.run --help` does not pay for it.
"""

__all__ = ["ConfigError", "StudyResult", "load", "run_study"]


def __getattr__(name: str):
    if name in __all__:
        from study import api

        return getattr(api, name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")
