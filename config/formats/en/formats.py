"""The same formats for `en` as for `en_GB` (config/formats/en_GB/formats.py says why)."""

from config.formats.en_GB.formats import *  # noqa: F403
