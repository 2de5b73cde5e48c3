"""What the driver checks of each task before any trial runs: its data read (arrays) or made (a
live DataModule), its model built, and one batch through it, on the CPU. A task that does not fit
is one line (TaskError, DataError), said before Ray starts a trial.

* The short form (a plain torch.nn.Module and arrays): one forward pass on two examples gives
  logits over the classes, every label a class (`check_model`).
* A LightningModule, or the short form on a live DataModule: the module has an LR where Lightning's
  Tuner looks for it, a live DataModule's training loader yields a batch (and it takes
  `--batch-size` where one is given), and one validation batch, run by a Trainer of the module's
  own package, logs the metric the study compares on (`check_module`).
"""

from __future__ import annotations

from trainables.tasks import Task, TaskError, _last_line, build_model, build_module, is_short_form

SHORT_FORM_METRICS = ("val_acc", "val_loss")  # what the study's LitClassifier logs in validation


def check_model(spec: str, dataset) -> int:
    """The short form: one forward pass of the task's model, on the CPU, on two training examples
    of `dataset` (trainables/data.py's Dataset): its output must be (2, classes) logits, with every
    label of the data a class. Returns the number of classes; TaskError with one line otherwise."""
    import torch

    hint = ("the short form (a plain torch.nn.Module and arrays) is single-label classification with "
            "cross-entropy; for regression or any other loss, make model a LightningModule")
    try:
        model = build_model(spec).cpu().eval()
        with torch.no_grad():
            out = model(torch.as_tensor(dataset.train_x[:2]))
    except TaskError:
        raise
    except Exception as e:
        raise TaskError(f"--task {spec}: its model fails on a batch of its data ({_last_line(e)})") from None
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 2 or shape[0] != min(2, len(dataset.train_x)) or shape[1] < 2:
        raise TaskError(f"--task {spec}: its model's output for a batch of 2 has shape {shape}, expected (2, classes): "
                        f"one logit per class ({hint})")
    labels = max(int(y.max()) for y in (dataset.train_y, dataset.val_y, dataset.test_y) if len(y))
    if labels >= shape[1]:
        raise TaskError(f"--task {spec}: its data has label {labels}, but its model outputs {shape[1]} classes (0..{shape[1] - 1})")
    return shape[1]


def check_module(spec: str, data, metric: str, batch_size: int | None) -> dict:
    """A LightningModule task (or the short form on a live DataModule) on `data` (a Dataset or a
    live DataModule): TaskError with one line unless the module has an LR, the DataModule yields
    batches (and takes `batch_size`, unless None) and one validation batch logs `metric`. Returns
    what the study must know of the module: "module" (its class's name), "own_optimizer" (it has
    its own configure_optimizers), "logged" (the names one validation batch logged)."""
    import torch

    from trainables import framework
    from trainables.loaders import in_memory, live

    module = build_module(spec)
    name = type(module).__name__
    if framework.lr_attr(module) is None:
        raise TaskError(f"--task {spec}: {name} has no lr or learning_rate (an attribute, or in its hparams): "
                        "the study sets each arm's LR there, as Lightning's Tuner does")
    pl = framework.package(module)
    if framework.is_datamodule(data):
        if framework.package(data) is not pl:
            raise TaskError(f"--task {spec}: its model is a {pl.__name__} LightningModule but its data a "
                            f"{framework.package(data).__name__} DataModule; a Trainer takes one package's")
        if batch_size is not None and not framework.has_batch_size(data):
            raise TaskError(f"--task {spec}: --batch-size {batch_size}: its {type(data).__name__} has no batch_size "
                            "(attribute or hparam) to set; drop the flag to use its own batches")
        live(data, batch_size)  # sets it on the DataModule
        try:
            data.prepare_data()
            data.setup("fit")
            first = next(iter(data.train_dataloader()), None)
        except Exception as e:
            raise TaskError(f"--task {spec}: its {type(data).__name__} fails to give a training batch ({_last_line(e)})") from None
        if first is None:
            raise TaskError(f"--task {spec}: its {type(data).__name__}'s train_dataloader yields no batch")
        kwargs = {"datamodule": data}
    else:
        kwargs = {"dataloaders": in_memory(data, 2, 0, torch.device("cpu")).val}
    framework.quiet()
    trainer = pl.Trainer(accelerator="cpu", devices=1, limit_val_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    try:
        trainer.validate(module, verbose=False, **kwargs)
    except Exception as e:
        raise TaskError(f"--task {spec}: one validation batch of its {name} failed ({_last_line(e)})") from None
    logged = sorted(trainer.callback_metrics)
    if metric not in logged:
        raise TaskError(f"--task {spec}: its {name} never logs {metric} in validation (one batch logged: "
                        f"{', '.join(logged) or 'nothing'}); log it with self.log, or name another with --metric")
    return {"module": name, "own_optimizer": framework.owns_optimizer(module), "logged": logged}


def load_data(loaded: dict[str, Task], settings: dict[str, dict]) -> tuple[dict, dict]:
    """Each task's data (`loaded`: Task by --task spec), read, checked and split once per distinct
    `data` and split (the built-in tasks share Fashion-MNIST's), then its model checked on it.
    `settings[spec]`: that task's "metric" and "batch_size" (None: a DataModule's own), and
    trainables/data.py's `from_task` split settings (val_size, split_seed, normalize, subset).
    Returns, by spec, the Dataset its trials share through the object store (None for a live
    DataModule, which each trial makes itself), and what the study must know of the task: "live"
    (its data is a live DataModule), "own_optimizer" (its module builds its own optimiser),
    "module" (its module's class name). DataError or TaskError with one line, naming the task."""
    from trainables.data import Dataset, DataError, from_task

    data, facts, by_source = {}, {}, {}
    for spec, task in loaded.items():
        own = dict(settings[spec])
        metric, batch_size = own.pop("metric"), own.pop("batch_size")
        short = is_short_form(spec)
        key = (task.data, tuple(sorted(own.items())), short)
        if key not in by_source:
            try:
                by_source[key] = from_task(task, spec, classification=short, **own)
            except DataError as e:
                raise DataError(str(e) if str(e).startswith("--task ") else f"--task {spec}: {e}") from None
        got = by_source[key]
        live = not isinstance(got, Dataset)
        if short and not live:
            check_model(spec, got)
            if metric not in SHORT_FORM_METRICS:
                raise TaskError(f"--task {spec}: --metric {metric}: the short form logs {', '.join(SHORT_FORM_METRICS)}")
            fact = {"module": "LitClassifier", "own_optimizer": False}
        else:
            fact = check_module(spec, got, metric, batch_size)
        data[spec] = None if live else got
        facts[spec] = {"live": live, "own_optimizer": fact["own_optimizer"], "module": fact["module"]}
    return data, facts
