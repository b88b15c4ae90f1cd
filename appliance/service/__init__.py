"""The service layer: the one facade the CLI and the TUI share.

Functions here take plain arguments (paths, names, a Home) and return plain data
(dataclasses, dicts). They never print and never import Textual or Rich.
"""
