"""Multi-task objectives: YAML config -> validated data -> `Objective` -> results and tracking."""
from .config import ConfigError, ObjectiveConfig, parse_config
from .objective import Component, Objective, ObjectiveResult, load_objective
from .stacked import StackedComponent, StackedResult
from .state import ComponentState, ObjectiveState
from .tracker import Tracker

__all__ = ["Component", "ComponentState", "ConfigError", "Objective", "ObjectiveConfig",
           "ObjectiveResult", "ObjectiveState", "StackedComponent", "StackedResult", "Tracker",
           "load_objective", "parse_config"]
