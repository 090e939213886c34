"""Training: the DataModule (encoding, targets, augmentation), trainer settings, resuming,
and ``fit``, which only orchestrates them."""

from barloc.training.datamodule import task_classes
from barloc.training.fit import Trained, fit, train_for_calls
from barloc.training.trainer import trainer_settings

__all__ = ["Trained", "fit", "task_classes", "train_for_calls", "trainer_settings"]
