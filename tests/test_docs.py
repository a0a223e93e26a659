"""The examples in the docstrings run and print what they say."""
import doctest

import numpy as np
import pytest

import lossforge
import lossforge.buffers
import lossforge.collection
import lossforge.losses
import lossforge.nn


@pytest.mark.parametrize("module", [lossforge, lossforge.losses, lossforge.nn, lossforge.collection,
                                    lossforge.buffers])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"np": np, "lossforge": lossforge},
                             optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
