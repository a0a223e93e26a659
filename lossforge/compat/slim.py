"""TF-Slim's losses: ``slim.losses`` was ``tf.contrib.losses``, and so is `losses` here.

Everything in `lossforge.compat.contrib` is available both as ``slim.losses.<name>`` and as
``slim.<name>``, with contrib's argument order (predictions/logits first), contrib's weighting
and deprecated names (``sum_of_squares``); see that module for how they differ from
`lossforge.losses`. Losses are collected in the active `lossforge.LossCollection`, as Slim's
multi-task workflow (seed 003) expects::

    from lossforge.compat import slim
    with lossforge.LossCollection():
        classification_loss = slim.losses.softmax_cross_entropy(scene_logits, scene_onehot)
        sum_of_squares_loss = slim.losses.sum_of_squares(depth_predictions, depth_labels)
        slim.losses.add_loss(pose_loss)                       # a custom loss
        total_loss = slim.losses.get_total_loss()             # + regularization losses
"""
from . import contrib as losses
from .contrib import *  # noqa: F401,F403  (slim.<name> is slim.losses.<name>)

__all__ = ["losses", *losses.__all__]
