"""Comparing two images: their flattened file systems, their configs and (optionally) their layers.

``kiln diff`` is the command; ``diff_images`` is the same thing as a function, for tests and the conformance
suite.
"""

from kiln.diff.api import DiffOptions, diff_images, diff_opened
from kiln.diff.model import Difference, DiffReport
from kiln.diff.sources import open_image

__all__ = [
    "DiffOptions",
    "DiffReport",
    "Difference",
    "diff_images",
    "diff_opened",
    "open_image",
]
