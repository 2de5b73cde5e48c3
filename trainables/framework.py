"""Which Lightning a module is written against, and what the study sets on it the way Lightning does.

`lightning` (`import lightning as L`, as Lightning's docs write it) and `pytorch_lightning` are two
packages with the same classes under two names, and a Trainer takes only modules, DataModules and
callbacks of its own package. So a trial builds its Trainer, Tuner, logger and callbacks from the
package of the module it trains (`package`), as Ray's Lightning utilities do.

The LR and the batch size are set as Lightning's Tuner sets them: the module's `lr` or
`learning_rate` (an attribute, or in its `hparams`), found and set with Lightning's own
`lightning_hasattr` / `lightning_setattr`; a DataModule's `batch_size`, an attribute or an hparam,
as `BatchSizeFinder` scales it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

LR_ATTRS = ("lr", "learning_rate")  # what Lightning's Tuner looks for, in this order
PACKAGES = ("lightning.pytorch", "pytorch_lightning")


def package(obj) -> ModuleType:
    """The Lightning package whose LightningModule (or DataModule) `obj`'s class derives from;
    pytorch_lightning for anything else (the study's own modules)."""
    for cls in type(obj).__mro__:
        for name in PACKAGES:
            if cls.__module__ == name or cls.__module__.startswith(name + "."):
                return importlib.import_module(name)
    return importlib.import_module("pytorch_lightning")


def is_lightning_module(obj) -> bool:
    """Whether `obj` is a LightningModule of either package (without importing either)."""
    return any(c.__name__ == "LightningModule" and c.__module__.split(".")[0] in ("lightning", "pytorch_lightning")
               for c in type(obj).__mro__)


def is_datamodule(obj) -> bool:
    """Whether `obj` is a LightningDataModule of either package (without importing either)."""
    return any(c.__name__ == "LightningDataModule" and c.__module__.split(".")[0] in ("lightning", "pytorch_lightning")
               for c in type(obj).__mro__)


def is_lightning_module_class(obj) -> bool:
    return isinstance(obj, type) and any(c.__name__ == "LightningModule" for c in obj.__mro__)


def is_datamodule_class(obj) -> bool:
    return isinstance(obj, type) and any(c.__name__ == "LightningDataModule" for c in obj.__mro__)


def _parsing(module) -> ModuleType:
    return importlib.import_module(package(module).__name__ + ".utilities.parsing")


def lr_attr(module) -> str | None:
    """The name of the module's LR as Lightning's Tuner finds it: `lr` or `learning_rate`, an
    attribute or in `hparams`; None if it has neither."""
    return next((name for name in LR_ATTRS if _parsing(module).lightning_hasattr(module, name)), None)


def set_lr(module, lr: float) -> None:
    """Give the module `lr` where Lightning's Tuner would (`lightning_setattr`: its attribute, its
    hparams, or both where it has both)."""
    name = lr_attr(module)
    if name is None:
        raise AttributeError(f"{type(module).__name__} has no lr or learning_rate (attribute or hparam)")
    _parsing(module).lightning_setattr(module, name, lr)


def get_lr(module) -> float | None:
    name = lr_attr(module)
    return None if name is None else _parsing(module).lightning_getattr(module, name)


def has_batch_size(datamodule) -> bool:
    return hasattr(datamodule, "batch_size") or "batch_size" in (getattr(datamodule, "hparams", None) or {})


def set_batch_size(datamodule, batch_size: int) -> None:
    """The DataModule's `batch_size`, where `BatchSizeFinder` scales it: an attribute, else an hparam."""
    if hasattr(datamodule, "batch_size"):
        datamodule.batch_size = batch_size
    if "batch_size" in (getattr(datamodule, "hparams", None) or {}):
        datamodule.hparams.batch_size = batch_size
    if not has_batch_size(datamodule):
        raise AttributeError(f"{type(datamodule).__name__} has no batch_size (attribute or hparam)")


def overrides(module, hook: str) -> bool:
    """Whether the module's class defines `hook` itself (`configure_optimizers`, `test_step`, ...)."""
    return getattr(type(module), hook) is not getattr(package(module).LightningModule, hook)


def owns_optimizer(module) -> bool:
    """Whether the module builds its own optimiser (overrides `configure_optimizers`)."""
    return overrides(module, "configure_optimizers")


def quiet() -> None:
    """Keep a trial's (and the driver's checks') logs to what matters: no device banners, tips or
    known deprecations, whichever package logs them."""
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # "Checkpoint successfully created" x epochs
    for pattern in (".*weights_only.*", ".*LeafSpec.*", ".*no `val_dataloader`.*", ".*does not have many workers.*",
                    ".*GPU available but not used.*", ".*`self.trainer` reference is not registered.*"):
        warnings.filterwarnings("ignore", message=pattern)


def seed(value: int) -> None:
    """Every RNG a trial draws from (torch, numpy, Python's; DataLoader workers' too), as Lightning seeds them."""
    import pytorch_lightning as pl

    pl.seed_everything(value, workers=True, verbose=False)
