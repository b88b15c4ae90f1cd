"""The air-gapped secure training appliance.

Importing this package is cheap on purpose: it imports no torch, transformers, presidio or
textual. Each of those is imported lazily by the module that needs it, so `appliance
--version` and `appliance policy check` return fast.
"""

__version__ = "0.1.0"
