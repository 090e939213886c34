"""Training: the DataModule (encoding, targets, augmentation), trainer settings, resuming,
``fit``, which only orchestrates them, and cross-fitting (fold models and the refit)."""

from barloc.training.crossfit import CrossFit, cross_fit
from barloc.training.datamodule import task_classes
from barloc.training.fit import fit
from barloc.training.trainer import trainer_settings

__all__ = ["CrossFit", "cross_fit", "fit", "task_classes", "trainer_settings"]
