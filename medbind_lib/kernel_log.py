"""Quiet kernel shutdown: an IPython extension the runner loads into every notebook kernel it starts.

jupyter_client interrupts a kernel (SIGINT) before it asks it to shut down; a kernel still inside a message handler
at that moment logs ``ERROR | KeyboardInterrupt caught in kernel.`` on the terminal, although the notebook finished
(a default run printed it four times). The runner never interrupts a kernel otherwise (a cell timeout fails the run
by its own message), so that one record is noise and is dropped; every other kernel error still reaches the terminal.
"""
from __future__ import annotations

import logging

__all__ = ["ShutdownNoise", "load_ipython_extension", "EXTENSION_ARGS"]

NOISE = "KeyboardInterrupt caught in kernel"
# papermill's extra_arguments for the kernel: errors only (no per-kernel TCP warning), this extension loaded
EXTENSION_ARGS = ["--IPKernelApp.log_level=ERROR", f"--IPKernelApp.extensions={[__name__]!r}"]


class ShutdownNoise(logging.Filter):
    """Drops the shutdown-interrupt record (module docstring); passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(NOISE)


def load_ipython_extension(ipython) -> None:
    from ipykernel.kernelapp import IPKernelApp

    if IPKernelApp.initialized():
        IPKernelApp.instance().log.addFilter(ShutdownNoise())
