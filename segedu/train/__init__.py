"""Chapter 7: training like the papers.

* :mod:`~segedu.train.loop` — the small loop chapters 1-6 use: :func:`segmentation_loss`
  (cross-entropy + aux + per-pixel weights), :func:`train_one_epoch`, :func:`evaluate`,
  :func:`fit`, :func:`predict`, :func:`poly_lr` (``PolynomialLR`` with both defaults set);
* :mod:`~segedu.train.schedule` — poly decay in closed form, warm-up, a floor, 10x heads;
* :mod:`~segedu.train.trainer` — :class:`Trainer`: losses from :mod:`segedu.losses`, AMP,
  progress bars, history CSV and plot, atomic checkpoints, exact resume;
* :mod:`~segedu.train.distributed` — the same Trainer on many GPUs through ``torchrun``;
* :mod:`~segedu.train.inference` — sliding-window and multi-scale + flip evaluation;
* :mod:`~segedu.train.pretext` — the objectness pretext that pretrains the width-1/8 backbones
  the package ships (``pretrained_backbone="shapes"``), the CPU's stand-in for ImageNet.
"""

from .inference import multiscale_probs, sliding_window_probs
from .loop import History, evaluate, fit, poly_lr, predict, segmentation_loss, train_one_epoch
from .schedule import param_groups, poly_factor, poly_schedule
from .trainer import SeededSamples, TrainConfig, Trainer, evaluate_model

__all__ = [
    "poly_lr", "segmentation_loss", "train_one_epoch", "evaluate", "fit", "predict", "History",
    "poly_factor", "poly_schedule", "param_groups",
    "Trainer", "TrainConfig", "SeededSamples", "evaluate_model",
    "sliding_window_probs", "multiscale_probs",
]
