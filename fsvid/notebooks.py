"""Running the notebook series in ``notebooks/`` with parameters, and what the notebooks share.

Every notebook has one cell tagged ``parameters`` (papermill's convention). Two parameters
are common to all of them:

- ``seed``: seeds Python, numpy and torch (:func:`setup`);
- ``metrics_path``: where the notebook writes its metrics as JSON (:func:`save_metrics`);
  ``None`` writes nothing. :func:`run_notebook` sets it.

The notebooks with ipywidgets viewers (01, 03, 04, 05, 09: episode browser, attention and
tuple-match viewers) also have ``interactive``: ``True`` shows the sliders; ``False`` (the
default, so that papermill and nbval runs store plain figures) draws static figures and says
where a slider would be.

Notebooks run on the Jupyter kernel :data:`KERNEL_NAME` (``fsvid``, shown as "Python 3
(fsvid)"), which ``make venv`` installs into the project's ``.venv``; a kernel called
``python3`` would be whatever Python another Jupyter or an editor maps that name to.

Run a notebook with other parameters (a dict, or a YAML file of ``name: value`` lines)::

    from fsvid.notebooks import run_notebook
    run = run_notebook("07_training", "notebooks/params/strm_ssv2_full.yaml",
                       output_dir="/scratch/strm_ssv2")
    run.notebook        # /scratch/strm_ssv2/07_training-strm_ssv2_full.ipynb, executed
    run.metrics         # {"test_accuracy": ..., ...}, the notebook's metrics

or from a shell (``-p`` values are read as YAML)::

    python -m fsvid.notebooks run 07_training --parameters notebooks/params/trx_ssv2_full.yaml \\
        -p data_root=/data/ssv2/frames --output-dir /scratch/trx_ssv2
    python -m fsvid.notebooks list              # the notebooks and their parameters
    python -m fsvid.notebooks clear notebooks/*.ipynb
    python -m fsvid.notebooks refresh notebooks/03_trm_tuples.ipynb

Executed notebooks go to ``output_dir`` (default ``$FSVID_HOME/notebook_runs``), never into
``notebooks/``: that folder holds the sources only, with outputs cleared except the cells
marked ``# NBVAL_CHECK_OUTPUT``, whose stored text output ``pytest --nbval-lax`` compares
(:func:`clear_outputs`, :func:`refresh_notebook`).

Configurations. The notebooks build their :class:`fsvid.config.RunConfig` from a ``preset``
(a preset name or YAML file, ``None`` for the defaults) and a list of dotted ``overrides``.
On the synthetic dataset they use, unless told otherwise (``small_data=False``), a small
copy of it shared by all notebooks (:func:`small_data_overrides`: 8 videos of 16 frames per
class, 64 pixels, in ``$FSVID_HOME/synthetic_small``), generated once in about 15 seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsvid.config import RunConfig, load_config, read_yaml_file
from fsvid.paths import fsvid_home

#: The marker of cells whose output nbval compares (``pytest --nbval-lax``).
CHECK_OUTPUT_MARK = "# NBVAL_CHECK_OUTPUT"
#: The tag of the cell holding a notebook's parameters (papermill).
PARAMETERS_TAG = "parameters"
#: The kernel every notebook runs on (``make venv`` installs it; see :func:`check_kernel`).
KERNEL_NAME = "fsvid"
#: Extra arguments of the kernels started here: no warning-level log lines from ipykernel
#: (such as "Kernel is running over TCP without encryption" for a kernel on 127.0.0.1), which
#: would otherwise reach a notebook that starts other notebooks (08) as red stderr boxes.
KERNEL_ARGUMENTS = ["--log-level=ERROR"]

#: The small synthetic dataset shared by the notebooks (see the module docstring).
SMALL_DATA = {
    "synthetic_videos_per_class": 8,
    "synthetic_frames": 16,
    "synthetic_size": 64,
}

#: Shortcut parameters of ``07_training`` and the configuration field each one sets.
TRAINING_SHORTCUTS: dict[str, str] = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "split_dir": "data.split_dir",
    "method": "model.method",
    "backbone": "model.backbone",
    "backbone_weights": "model.backbone_weights",
    "way": "task.way",
    "shot": "task.shot",
    "tasks": "train.tasks",
    "lr": "train.lr",
    "device": "train.device",
    "amp": "train.amp",
    "eval_tasks": "eval.tasks",
    "name": "name",
    "output_dir": "output_dir",
}


# ----------------------------------------------------------------------------- finding notebooks


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the source checkout this package was imported from."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def list_notebooks() -> list[Path]:
    """The notebooks of the series, in reading order (``00_quickstart.ipynb``, ...)."""
    folder = notebooks_dir()
    return sorted(folder.glob("[0-9][0-9]_*.ipynb")) if folder.is_dir() else []


def find_notebook(name_or_path: str | Path) -> Path:
    """A notebook from a path, its name (``07_training``), its number (``07``) or the name
    without number (``training``). Raises ``FileNotFoundError`` listing the notebooks."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".ipynb" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"notebook {path} does not exist")
        return path.resolve()
    key = str(name_or_path)
    candidates = list_notebooks()
    for notebook in candidates:
        number, _, title = notebook.stem.partition("_")
        if key in (notebook.stem, number, title):
            return notebook
    names = ", ".join(n.stem for n in candidates) or f"none found in {notebooks_dir()}"
    raise FileNotFoundError(f"no notebook called {key!r}; notebooks: {names}")


# ----------------------------------------------------------------------------- parameters


def read_parameters(source: Mapping[str, Any] | str | Path | None) -> dict[str, Any]:
    """Notebook parameters from a dict, a YAML file of ``name: value`` pairs, or ``None``.

    A relative file path that does not exist from the current folder is looked up in
    ``notebooks/`` too, so ``params/strm_hmdb.yaml`` works from the repository root and from
    inside a notebook.
    """
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source).expanduser()
    if not path.is_file() and not path.is_absolute() and (notebooks_dir() / path).is_file():
        path = notebooks_dir() / path
    if not path.is_file():
        raise FileNotFoundError(f"parameter file {path} does not exist")
    data = read_yaml_file(path, what="parameter file")  # names the file and line of bad YAML or bytes
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"parameter file {path} must hold a mapping of name: value, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise ValueError(f"parameter file {path}: names must be Python identifiers, got {bad}")
    return data


def notebook_parameters(name_or_path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters`` cell, with their defaults
    (evaluated with ``ast.literal_eval``; a default that is not a literal is its source text)."""
    import ast

    import nbformat

    notebook = nbformat.read(find_notebook(name_or_path), as_version=4)
    cells = [c for c in notebook.cells if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{name_or_path}: expected one cell tagged {PARAMETERS_TAG!r}, found {len(cells)}")
    source = cells[0].source
    parameters: dict[str, Any] = {}

    def assign(target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            try:
                parameters[target.id] = ast.literal_eval(value)
            except ValueError:
                parameters[target.id] = ast.get_source_segment(source, value)
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
            for part, part_value in zip(target.elts, value.elts):  # way, shot = 3, 2
                assign(part, part_value)

    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                assign(target, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            assign(node.target, node.value)
    return parameters


def _as_override(key: str, value: Any) -> str:
    """``key=value`` with the value written as JSON (valid YAML), so that strings such as
    ``"01"`` stay strings when :func:`fsvid.config.parse_override` reads them back."""
    return f"{key}={json.dumps(value)}"


def small_data_overrides() -> list[str]:
    """Overrides selecting the notebooks' small synthetic dataset (``$FSVID_HOME/synthetic_small``)."""
    root = fsvid_home() / "synthetic_small"
    return [_as_override("data.root", str(root))] + [_as_override(f"data.{k}", v) for k, v in SMALL_DATA.items()]


def notebook_config(
    preset: str | Path | None = None, overrides: Sequence[str] = (), small_data: bool = True
) -> RunConfig:
    """``load_config(preset, overrides)``; on the synthetic dataset with ``small_data``, the
    small shared copy (:func:`small_data_overrides`) unless ``overrides`` say otherwise."""
    overrides = list(overrides)
    config = load_config(preset, overrides)
    if small_data and config.data.dataset == "synthetic":
        config = load_config(preset, [*small_data_overrides(), *overrides])
    return config


def training_config(
    preset: str | Path | None = None,
    overrides: Sequence[str] = (),
    small_data: bool = True,
    **shortcuts: Any,
) -> RunConfig:
    """The configuration ``07_training`` runs: ``preset`` + ``overrides`` + shortcuts.

    ``shortcuts`` are the notebook's convenience parameters (:data:`TRAINING_SHORTCUTS`,
    e.g. ``method="strm"``, ``lr=1e-4``, ``data_root="/data/ssv2"``); each one that is not
    ``None`` becomes an override applied after ``overrides``. Unknown names raise ``ValueError``.
    """
    unknown = sorted(set(shortcuts) - set(TRAINING_SHORTCUTS))
    if unknown:
        raise ValueError(f"unknown training parameters {unknown}; known: {', '.join(TRAINING_SHORTCUTS)}")
    extra = [_as_override(TRAINING_SHORTCUTS[k], v) for k, v in shortcuts.items() if v is not None]
    return notebook_config(preset, [*overrides, *extra], small_data)


# ----------------------------------------------------------------------------- inside notebooks


def setup(seed: int = 0, threads: int | None = 1) -> None:
    """Seed Python, numpy and torch, and set torch's CPU threads (``None``: leave as is).

    One thread is the default: results do not then depend on how a machine splits its
    BLAS work, and small CPU jobs on a shared machine run faster than with several threads.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(int(threads))


def _plain(value: Any) -> Any:
    """numpy / torch scalars and arrays, paths and tuples as JSON-ready Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_metrics(metrics: Mapping[str, Any], path: str | Path | None) -> dict[str, Any]:
    """Write a notebook's metrics as JSON to ``path`` (atomically; nothing when ``None``) and
    return them as plain Python values."""
    plain = _plain(metrics)
    if path is not None:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(plain, indent=2, sort_keys=True))
        tmp.replace(path)
    return plain


# ----------------------------------------------------------------------------- running


class NotebookError(RuntimeError):
    """A notebook failed while running; the message names the partly executed copy."""


@dataclass
class NotebookRun:
    """An executed notebook: its file, the metrics it saved, its parameters, its run time."""

    notebook: Path
    metrics: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def default_output_dir() -> Path:
    """Where executed notebooks go unless told otherwise: ``$FSVID_HOME/notebook_runs``."""
    return fsvid_home() / "notebook_runs"


def _check_output_dir(output_dir: Path) -> None:
    source = notebooks_dir().resolve()
    resolved = output_dir.resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir {output_dir} is a file; give the folder for the executed notebooks")
    if resolved == source or source in resolved.parents:
        raise ValueError(
            f"output_dir {output_dir} is inside {source}: executed notebooks must go elsewhere "
            "(pytest --nbval-lax notebooks/ would collect them), e.g. $FSVID_HOME/notebook_runs"
        )


def check_kernel(name: str = KERNEL_NAME) -> str:
    """``name`` if Jupyter has a kernel of that name; ``RuntimeError`` saying how to install it otherwise."""
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().find_kernel_specs()
    if name not in found:
        raise RuntimeError(
            f"no Jupyter kernel called {name!r} (found: {', '.join(sorted(found)) or 'none'}); install it for "
            f"this Python with `{sys.executable} -m ipykernel install --sys-prefix --name {name} "
            f'--display-name "Python 3 ({name})"` (make venv does this)'
        )
    return name


def _drop_unknown_parameter_warnings(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Passed unknown parameter")


def run_notebook(
    name_or_path: str | Path,
    parameters: Mapping[str, Any] | str | Path | None = None,
    output_dir: str | Path | None = None,
    *,
    kernel_name: str = KERNEL_NAME,
    progress: bool = False,
    log_output: bool = False,
    timeout: float | None = None,
    label: str | None = None,
) -> NotebookRun:
    """Execute a notebook with papermill and return the executed file and its metrics.

    Args:
        name_or_path: a notebook path or name (:func:`find_notebook`).
        parameters: a dict or a YAML file of ``name: value`` pairs; names must be parameters
            of the notebook (``ValueError`` otherwise, listing them). ``metrics_path`` is set
            to ``<output_dir>/<stem>.metrics.json`` unless given.
        output_dir: folder for the executed notebook and its metrics (default
            ``$FSVID_HOME/notebook_runs``; not inside ``notebooks/``).
        kernel_name: the Jupyter kernel (:data:`KERNEL_NAME`, checked by :func:`check_kernel`).
        progress, log_output: papermill's progress bar and cell output streaming.
        timeout: seconds allowed per cell (``None``: no limit).
        label: appended to the output names, ``<stem>-<label>.ipynb``; default: the parameter
            file's stem when ``parameters`` is a file, else nothing (``<stem>.ipynb``).

    The notebook runs into a hidden file beside the outputs; only when it has finished does it
    replace the previous run's ``<stem>.ipynb`` and metrics. Raises :class:`NotebookError` when
    a cell fails: the partly executed copy is then ``<stem>.failed.ipynb``, the previous run's
    files are untouched.
    """
    import papermill

    notebook = find_notebook(name_or_path)
    check_kernel(kernel_name)
    params = read_parameters(parameters)
    declared = notebook_parameters(notebook)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(
            f"{notebook.name} has no parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"its parameters: {', '.join(declared)}"
        )
    output_dir = Path(output_dir).expanduser() if output_dir is not None else default_output_dir()
    _check_output_dir(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if label is None and isinstance(parameters, (str, Path)):
        label = Path(parameters).stem
    stem = f"{notebook.stem}-{label}" if label else notebook.stem
    executed = output_dir / f"{stem}.ipynb"
    metrics_file = Path(params["metrics_path"]) if params.get("metrics_path") else output_dir / f"{stem}.metrics.json"
    # The run writes beside the previous run's files, which stay until it has succeeded.
    running = output_dir / f".{stem}.running-{os.getpid()}.ipynb"
    running_metrics = metrics_file.with_name(f".{metrics_file.name}.running-{os.getpid()}")
    if "metrics_path" in declared:
        params["metrics_path"] = str(running_metrics)

    started = time.time()
    # papermill infers parameters line by line, so it warns about multi-line defaults such as
    # the lists of overrides ("Unable to parse line", "Passed unknown parameter"); they were
    # checked above with a real parser (notebook_parameters).
    translators, papermill_logger = logging.getLogger("papermill.translators"), logging.getLogger("papermill")
    translators_level = translators.level
    translators.setLevel(logging.ERROR)
    papermill_logger.addFilter(_drop_unknown_parameter_warnings)
    try:
        papermill.execute_notebook(
            str(notebook),
            str(running),
            parameters=params,
            kernel_name=kernel_name,
            progress_bar=progress,
            log_output=log_output,
            cwd=str(notebook.parent),
            execution_timeout=timeout,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except papermill.PapermillExecutionError as error:
        failed = output_dir / f"{stem}.failed.ipynb"
        os.replace(running, failed)
        running_metrics.unlink(missing_ok=True)
        kept = f"; {executed.name} of the previous run is untouched" if executed.exists() else ""
        raise NotebookError(
            f"{notebook.name} failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
            f"the partly executed notebook is {failed}{kept}"
        ) from error
    except BaseException:
        running.unlink(missing_ok=True)
        running_metrics.unlink(missing_ok=True)
        raise
    finally:
        translators.setLevel(translators_level)
        papermill_logger.removeFilter(_drop_unknown_parameter_warnings)
    os.replace(running, executed)
    if running_metrics.exists():
        os.replace(running_metrics, metrics_file)
    else:
        metrics_file.unlink(missing_ok=True)  # never report a previous run's metrics
    if "metrics_path" in declared:
        params["metrics_path"] = str(metrics_file)
    return NotebookRun(executed, read_metrics(metrics_file), params, time.time() - started)


def read_metrics(path: Path) -> dict[str, Any]:
    """The metrics a notebook saved in ``path`` (``{}`` when it saved none); a damaged file is
    a ``ValueError`` naming it."""
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the notebook's metrics file {path} is damaged ({error})") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"the notebook's metrics file {path} holds a {type(metrics).__name__}, not a mapping")
    return metrics


# ----------------------------------------------------------------------------- committed outputs


def clear_outputs(path: str | Path, keep_checked: bool = True) -> bool:
    """Clear a notebook's outputs and execution counts in place, except (``keep_checked``)
    the text outputs (and execution counts) of cells marked ``# NBVAL_CHECK_OUTPUT``, which
    nbval compares.
    Images are always removed. Also drops papermill's and widgets' metadata.
    Returns whether the file changed."""
    import nbformat

    path = Path(path)
    before = path.read_text(encoding="utf-8")
    try:
        notebook = nbformat.reads(before, as_version=4)
    except Exception as error:  # nbformat's NotJSONError, a ValidationError, ...
        raise ValueError(f"{path} is not a notebook fsvid can read ({type(error).__name__}: {error})") from None
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        checked = keep_checked and CHECK_OUTPUT_MARK in cell.source
        kept = []
        for output in cell.outputs if checked else []:
            if output.output_type == "stream" and output.get("name") == "stdout":
                kept.append(output)
            elif output.output_type in ("execute_result", "display_data") and "text/plain" in output.get("data", {}):
                output.data = {"text/plain": output.data["text/plain"]}
                output.metadata = {}
                kept.append(output)
        cell.outputs = kept
        if not kept:  # nbval treats a cell without execution count as never run: keep the checked ones
            cell.execution_count = None
    for key in ("papermill", "widgets"):
        notebook.metadata.pop(key, None)
    after = nbformat.writes(notebook) + "\n"
    if after != before:
        path.write_text(after)
    return after != before


def refresh_notebook(path: str | Path, timeout: float | None = 600) -> Path:
    """Execute a source notebook in place at its default parameters, then
    :func:`clear_outputs`: stores the checked cells' current outputs for nbval."""
    import nbformat
    from nbclient import NotebookClient

    path = find_notebook(path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name=check_kernel(), extra_arguments=KERNEL_ARGUMENTS,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    clear_outputs(path)
    return path


# ----------------------------------------------------------------------------- command line


def _parse_assignment(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    name, raw = text.split("=", 1)
    return name.strip(), yaml.safe_load(raw) if raw.strip() else None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fsvid.notebooks {run,list,clear,refresh}``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m fsvid.notebooks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook with parameters (papermill)")
    run.add_argument("notebook", help="name (07_training, 07, training) or path")
    run.add_argument("--parameters", "-f", help="YAML file of notebook parameters")
    run.add_argument("-p", dest="assignments", action="append", default=[], type=_parse_assignment,
                     metavar="NAME=VALUE", help="one parameter (value read as YAML); repeatable, wins over the file")
    run.add_argument("--output-dir", "-o", help="default: $FSVID_HOME/notebook_runs")
    run.add_argument("--timeout", type=float, default=None, help="seconds per cell")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no cell output")
    commands.add_parser("list", help="the notebooks and their parameters")
    clear = commands.add_parser("clear", help="clear outputs except the nbval-checked cells")
    clear.add_argument("paths", nargs="+")
    refresh = commands.add_parser("refresh", help="execute in place, then clear (stores checked outputs)")
    refresh.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    try:
        return _run_command(args)
    except KeyboardInterrupt:
        print(f"python -m fsvid.notebooks {args.command}: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as error:  # NotebookError is a RuntimeError
        print(f"python -m fsvid.notebooks {args.command}: error: {error}", file=sys.stderr)
        return 1


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "list":
        for notebook in list_notebooks():
            print(f"{notebook.stem}: {notebook_parameters(notebook)}")
        return 0
    if args.command == "clear":
        for path in args.paths:
            print(f"{path}: {'cleared' if clear_outputs(path) else 'unchanged'}")
        return 0
    if args.command == "refresh":
        for path in args.paths:
            print(f"refreshing {path}", flush=True)
            refresh_notebook(path)
        return 0
    parameters: Any = args.parameters
    if args.assignments:
        parameters = {**read_parameters(args.parameters), **dict(args.assignments)}
    label = Path(args.parameters).stem if args.parameters else None
    result = run_notebook(args.notebook, parameters, args.output_dir, progress=not args.quiet,
                          log_output=not args.quiet, timeout=args.timeout, label=label)
    print(f"executed notebook: {result.notebook}")
    print(f"metrics: {json.dumps(result.metrics, indent=2, sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
