"""Widgets shared by the console's screens. They import no core module."""
