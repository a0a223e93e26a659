"""Multi-task objectives: YAML config -> validated data -> `Objective` -> results and tracking."""
from .config import ConfigError, ObjectiveConfig, parse_config
from .objective import Component, Objective, ObjectiveResult, load_objective
from .tracker import Tracker

__all__ = ["Component", "ConfigError", "Objective", "ObjectiveConfig", "ObjectiveResult", "Tracker",
           "load_objective", "parse_config"]
