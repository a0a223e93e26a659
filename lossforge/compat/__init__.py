"""The pre-``tf.losses`` forms of TensorFlow's losses: ``tf.contrib.losses`` and TF-Slim.

* `lossforge.compat.contrib` reproduces ``tf.contrib.losses`` (TF 1.x, deprecated 2016-12-30):
  predictions first, no ``reduction`` argument, contrib's own weighting and normalisation,
  the deprecated names ``sum_of_squares`` / ``sum_of_pairwise_squares`` / ``log`` and the
  deprecated keywords ``weight=`` / ``targets=``.
* `lossforge.compat.slim` is TF-Slim's ``slim.losses`` (which was the contrib module), with
  the same names also at module level.

Neither is imported by ``import lossforge``; import them explicitly::

    from lossforge.compat import contrib, slim
"""
from . import contrib, slim

__all__ = ["contrib", "slim"]
