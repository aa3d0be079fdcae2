"""The notebook kernels' garbage collector: what survives a full collection is frozen
(`gc.freeze`), so that the next full collection passes over what came since instead of the
whole heap again.

Importing torch, transformers and vLLM grows a kernel's heap to 0.5-0.8 million objects and
sets off a full collection each time it has grown by a quarter: 5-9 passes over the heap so
far, 0.03-0.5 s each, in every kernel (~1 s of a 15 s draft training on one thread, and more
during training itself). vLLM freezes its own startup heap the same way. What is frozen is
not collected again until something unfreezes it (`engine.one_collection` does at every engine
stop): reference cycles that die later stay in memory until then, at most until the kernel ends.
"""

from __future__ import annotations

import gc

# ipykernel runs this in every kernel the runner starts, before the notebook's first cell.
KERNEL_ARGUMENT = "--IPKernelApp.exec_lines=from lib import heap; heap.freeze_survivors()"


def _freeze_after_full(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def freeze_survivors() -> None:
    """From now on, every full collection of this process ends by freezing what survived it."""
    if _freeze_after_full not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full)


def stop_freezing() -> None:
    """Undo `freeze_survivors` (and unfreeze the heap)."""
    while _freeze_after_full in gc.callbacks:
        gc.callbacks.remove(_freeze_after_full)
    gc.unfreeze()
