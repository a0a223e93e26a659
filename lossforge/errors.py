"""The exceptions lossforge raises: every public error is a ValueError or a TypeError."""


class LossforgeError(Exception):
    """Base class of lossforge's own errors (catch this to catch them all)."""


class InvalidArgumentError(LossforgeError, ValueError):
    """An argument has a valid type but an invalid value or shape.

    The message names the argument, the shapes involved and how to fix it.
    """


class InvalidTypeError(LossforgeError, TypeError):
    """An argument has a type lossforge cannot compute with (strings, objects, complex, ...)."""
