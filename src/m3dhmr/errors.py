"""The package's own error types: how a caller (and the CLI) tells a bad input from a bug.

Every check that refuses a caller's input (an argument, a file, a config, an image)
raises :class:`InputError` or a subclass. It derives from ``ValueError``, so code that
catches ``ValueError`` keeps working; the command line prints these as one line and
lets every other exception (a ``ValueError`` deep in NumPy or torch included) keep its
traceback, because those are bugs to report, not mistakes to fix.
"""

from __future__ import annotations


class InputError(ValueError):
    """An input the package refuses (a bad argument, file, config or image); the message
    names the problem and, where it can, the fix."""


class UserError(InputError):
    """A command-line mistake (a bad option or a combination of options)."""
