"""The exceptions lossforge raises: every public error is a ValueError or a TypeError."""


class LossforgeError(Exception):
    """Base class of lossforge's own errors (catch this to catch them all)."""


class InvalidArgumentError(LossforgeError, ValueError):
    """An argument has a valid type but an invalid value or shape.

    The message names the argument, the shapes involved and how to fix it.
    """


class InvalidTypeError(LossforgeError, TypeError):
    """An argument has a type lossforge cannot compute with (strings, objects, complex, ...)."""


class FormulaError(LossforgeError, TypeError):
    """A registered loss's formula cannot be compiled by Numba (raised at the loss's first use,
    naming it; every other loss keeps working)."""

    @classmethod
    def from_numba(cls, loss: str, exc: Exception) -> "FormulaError":
        import re
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # numba's messages carry ANSI colours
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # the lines that say what went wrong, innermost first (numba nests its reports)
        key = re.compile(r"(Error: |Untyped global name|Unknown attribute|Use of unsupported|"
                         r"Cannot |Invalid use|NameError|not supported|No implementation of "
                         r"function Function\(<(built-in )?function (?!VALUE|LOSS|GRAD|_))")
        picked = list(dict.fromkeys(line for line in lines if key.search(line)))[:4]
        detail = "\n    ".join(picked or lines[:6])
        return cls(f"loss {loss!r}: Numba cannot compile its formula ({type(exc).__name__}). "
                   f"A formula is plain Python on float scalars and math.* functions; numba "
                   f"said:\n    {detail}")
