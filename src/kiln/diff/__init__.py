"""Comparing two images: their flattened file systems, their configs and (optionally) their layers.

``kiln diff`` is the command; ``diff_addresses`` is the same thing as a function (indexes platform by platform),
``diff_images`` compares one image of each side, for tests and the conformance suite.
"""

from kiln.diff.api import DiffOptions, diff_addresses, diff_images, diff_opened
from kiln.diff.model import Difference, DiffReport, PlatformDiff, PlatformsReport
from kiln.diff.sources import open_image

__all__ = [
    "DiffOptions",
    "DiffReport",
    "Difference",
    "PlatformDiff",
    "PlatformsReport",
    "diff_addresses",
    "diff_images",
    "diff_opened",
    "open_image",
]
