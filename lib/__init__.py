"""Speculative decoding with Chain of Draft: the workbook's library.

Notebooks only import from here; every stage's logic lives in one module.
Kept import-light on purpose: `import lib` must not pull torch or vLLM.
"""

__version__ = "0.1.0"
