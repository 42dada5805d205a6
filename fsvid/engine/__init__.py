"""Training and evaluation: episodic training (one or several processes), checkpoints that
survive a crash, evaluation with 95% confidence intervals, paired comparisons of runs.

>>> from fsvid.config import load_config
>>> from fsvid.engine import train, evaluate_run, compare_runs
>>> result = train(load_config("synthetic_trx", ["name=trx"]))     # $FSVID_HOME/runs/trx
>>> evaluate_run(result.directory).accuracy                         # Accuracy(mean, ci95, tasks)
>>> print(compare_runs(run_a, run_b))                               # a - b on the same tasks

Modules: :mod:`~fsvid.engine.training` (the training loop), :mod:`~fsvid.engine.evaluate`
(scoring a model on a task list), :mod:`~fsvid.engine.runs` (run folders: loading,
evaluating, comparing), :mod:`~fsvid.engine.metrics` (accuracy and its interval),
:mod:`~fsvid.engine.checkpoint` (atomic files), :mod:`~fsvid.engine.distributed` (devices,
mixed precision, torchrun), :mod:`~fsvid.engine.data` (from a configuration to episodes),
:mod:`~fsvid.engine.features` (training and evaluating from the feature cache).
"""

from fsvid.engine.features import evaluate_from_cache, feature_episodes
from fsvid.engine.checkpoint import atomic_save, load_checkpoint
from fsvid.engine.data import DataLocation, episode_dataset, locate_data
from fsvid.engine.distributed import Distributed, autocast_context, resolve_device
from fsvid.engine.evaluate import EvalResult, evaluate_model
from fsvid.engine.metrics import (
    Accuracy,
    PairedDifference,
    confusion_matrix,
    mean_and_ci,
    paired_difference,
    per_class_accuracy,
)
from fsvid.engine.runs import (
    build_run_cache,
    compare_runs,
    evaluate_config,
    evaluate_run,
    load_trained_model,
    run_dir,
)
from fsvid.engine.training import TrainingDiverged, TrainResult, task_loss, train

__all__ = [
    "train",
    "TrainResult",
    "TrainingDiverged",
    "task_loss",
    "evaluate_model",
    "EvalResult",
    "evaluate_run",
    "evaluate_config",
    "compare_runs",
    "load_trained_model",
    "run_dir",
    "build_run_cache",
    "evaluate_from_cache",
    "feature_episodes",
    "Accuracy",
    "PairedDifference",
    "mean_and_ci",
    "paired_difference",
    "confusion_matrix",
    "per_class_accuracy",
    "atomic_save",
    "load_checkpoint",
    "Distributed",
    "autocast_context",
    "resolve_device",
    "DataLocation",
    "episode_dataset",
    "locate_data",
]
