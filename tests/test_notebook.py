"""notebooks/tutorial.ipynb runs top to bottom in a real Jupyter kernel (nbclient), on a subset.

Its parameters come from the kernel's environment (MNIST_EXP_OVERRIDES, MNIST_EXP_SWEEP), as for
a headless run, so the notebook itself stays what a user opens.
"""

from __future__ import annotations

import shlex

import nbformat
import pytest
from nbclient import NotebookClient

from mnist_exp.config import PROJECT_ROOT
from mnist_exp.names import PARENT_TAG
from tests.helpers import LIBRARY_LINES, TINY, Store, cli_env

NOTEBOOK = PROJECT_ROOT / "notebooks" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_a_subset(tmp_path, mnist_dir):
    store = Store(tmp_path / "mlruns")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The sweep's own epochs (3) give way to the overrides' (1): they hold in every cell.
    sweep = ["model.hidden=8,16", "train.epochs=3", f"hydra.sweep.dir={tmp_path}/multirun"]
    parameters = {"MNIST_EXP_OVERRIDES": shlex.join([*TINY, *store.overrides]),
                  "MNIST_EXP_SWEEP": shlex.join(sweep)}  # fmt: skip
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    # Raises CellExecutionError naming a failing cell.
    client.execute(env=cli_env(mnist_dir, parameters))

    def text_of(cell) -> str:
        streams = [o.get("text", "") for o in cell.outputs if o.output_type == "stream"]
        results = [o.get("data", {}).get("text/plain", "") for o in cell.outputs]
        return "".join(streams + results)

    printed = "\n".join(text_of(c) for c in notebook.cells if c.cell_type == "code")
    assert "x_train (60000, 28, 28)" in printed and "(from: cache)" in printed
    assert not LIBRARY_LINES.search(printed), LIBRARY_LINES.search(printed)  # a quiet notebook
    assert "test accuracy 0." in printed and "misclassified" in printed
    assert "model from MLflow gives the same probabilities: True" in printed
    assert "training mnist digest" in printed and "test     mnist digest" in printed
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]  # fmt: skip
    # samples, accuracy curve, example, misclassified grid, the sweep's validation curves
    assert len(images) == 5

    runs = store.runs()
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    children = [r for r in runs if PARENT_TAG in r.data.tags]
    assert sorted(c.info.run_name.split()[0] for c in children) == ["dense-h16", "dense-h8"]
    assert {c.data.params["train.epochs"] for c in children} == {"1"}
    (sweep,) = {c.data.tags[PARENT_TAG] for c in children}
    (single,) = [r for r in runs if PARENT_TAG not in r.data.tags and r.info.run_id != sweep]
    assert single.info.run_name.startswith("dense-h128 ")
    table = next(c for c in notebook.cells if "sweep.table" in c.source)
    assert "dense-h8" in text_of(table) and "dense-h16" in text_of(table)
