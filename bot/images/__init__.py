"""Pillow work, always off the event loop: one module a job, and this package's public names.

- ``codec``: judging a file by its content, decoding, colour modes, EXIF rotation, encoding under a cap
- ``prepare``: inputs for providers (checked, normalised, downscaled, as a data URI)
- ``fitting``: results fitted to Discord's upload limit
- ``sources``: the CLI's ``--image`` sources, local files or links (fetched by ``bot.downloads``)
- ``placeholder``: the sandbox provider's marked placeholder image

``identify`` (a header parse) and ``render_placeholder`` are synchronous; callers on the event loop
wrap the latter in a thread. ``prepare_input`` and ``fit_for_upload`` run on the executor they get.
"""

from bot.images.codec import ACCEPTED_FORMATS, DAMAGED, NOT_AN_IMAGE, ImageInfo, identify
from bot.images.fitting import OUTPUT_MAX_PIXELS, FittedImage, fit_for_upload
from bot.images.placeholder import SANDBOX_MARK, render_placeholder
from bot.images.prepare import MAX_ASPECT, MAX_PREPARED_BYTES, MIN_SIDE, PreparedImage, prepare_input
from bot.images.sources import fetch_url, load_source

__all__ = [
    "ACCEPTED_FORMATS",
    "DAMAGED",
    "MAX_ASPECT",
    "MAX_PREPARED_BYTES",
    "MIN_SIDE",
    "NOT_AN_IMAGE",
    "OUTPUT_MAX_PIXELS",
    "SANDBOX_MARK",
    "FittedImage",
    "ImageInfo",
    "PreparedImage",
    "fetch_url",
    "fit_for_upload",
    "identify",
    "load_source",
    "prepare_input",
    "render_placeholder",
]
