import os
import sys

from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))  # tests import reference.py and cases.py

# The first example of a property test pays the JIT compile: no per-example deadline.
settings.register_profile("lossforge", deadline=None, max_examples=60)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lossforge"))
