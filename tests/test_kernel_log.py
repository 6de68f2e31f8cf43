"""A successful run's terminal shows no kernel ERROR line: the shutdown-interrupt record is dropped, real kernel
errors are kept, and every kernel the runner starts loads the filter."""
import logging

import nbformat

from medbind_lib.kernel_log import EXTENSION_ARGS, ShutdownNoise


def _record(msg, level=logging.ERROR):
    return logging.LogRecord("IPKernelApp", level, __file__, 1, msg, None, None)


def test_filter_drops_only_the_shutdown_interrupt():
    f = ShutdownNoise()
    assert not f.filter(_record("KeyboardInterrupt caught in kernel."))
    assert not f.filter(_record("KeyboardInterrupt caught in kernel"))          # the other ipykernel spelling
    assert f.filter(_record("Exception in message handler:"))
    assert f.filter(_record("Error in message handler: KeyboardInterrupt caught in kernel"))   # not a prefix


def test_runner_kernels_load_the_filter(tmp_path):
    """A real kernel started with the runner's arguments (as run.run_notebook starts every notebook) has it."""
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from ipykernel.kernelapp import IPKernelApp\n"
                                          "print([type(f).__name__ for f in IPKernelApp.instance().log.filters])")]
    src, out = tmp_path / "k.ipynb", tmp_path / "k_out.ipynb"
    nbformat.write(nb, src)
    done = pm.execute_notebook(str(src), str(out), kernel_name="python3", extra_arguments=EXTENSION_ARGS,
                               progress_bar=False)
    assert "ShutdownNoise" in done.cells[0].outputs[0]["text"]


def test_run_notebook_passes_the_kernel_arguments(monkeypatch, tmp_path):
    import papermill as pm

    from medbind_lib import run

    seen = {}
    monkeypatch.setattr(run, "check_parameters", lambda nb, params: None)
    monkeypatch.setattr(pm, "execute_notebook", lambda *a, **kw: seen.update(kw))
    run.run_notebook(tmp_path / "00_x.ipynb", tmp_path, {}, None, False)
    assert seen["extra_arguments"] == EXTENSION_ARGS
