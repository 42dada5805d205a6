"""The notebooks as a student finds them: JupyterLab 4 in headless Chromium (``make test-browser``).

Starts JupyterLab from this Python (the project's venv) on 127.0.0.1 with a free port and a
random token, serving a temporary copy of ``notebooks/`` (so nothing JupyterLab saves reaches
the repository), and drives it with Playwright over Debian's Chromium:

- each notebook of :data:`NOTEBOOKS` opens on the ``fsvid`` kernel (no kernel-choice dialog),
  runs with Run > Run All Cells, and shows no error and no stderr box, and all its images load;
- in ``03_trm_tuples`` ``interactive = True`` is then typed at the end of the parameters cell
  and all cells run again (the other notebooks with widgets, :data:`SLIDERS`, run once, with
  ``interactive = True`` typed in first); the widgets' pictures are shown at the size they were
  drawn at (not stretched), and moving the first slider with the keyboard changes its picture's
  pixels.

Then JupyterLab is shut down (REST ``/api/shutdown``, then its pid). What is missing is
installed first: Chromium with ``apt-get install -y chromium`` (as root), Playwright with
``pip install playwright`` into this Python (no browser download: Playwright drives
``/usr/bin/chromium``). Prints one ``N passed, M failed`` line; the exit status is 1 on failure.

Not collected by ``make test`` (``pytest`` looks in ``tests/`` and ``notebooks/`` only).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Notebooks run cell by cell in the browser, in this order.
NOTEBOOKS = ["00_quickstart", "01_data_and_splits", "03_trm_tuples", "04_strm_enrichment",
             "05_mastaf_attention_fusion", "09_visualisations"]
#: Notebooks whose widgets are turned on (the first one's slider is moved): name -> widget pictures expected.
SLIDERS = {"01_data_and_splits": 1, "03_trm_tuples": 1, "04_strm_enrichment": 1, "05_mastaf_attention_fusion": 1,
           "09_visualisations": 2}
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
RUN_TIMEOUT_S = 240  # one notebook's Run All


# ----------------------------------------------------------------------------- what it needs


def chromium() -> str:
    """The Chromium executable, installed with apt-get (as root) when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("Chromium is missing: install Debian's `chromium` package (apt-get install -y chromium), then rerun")
    print("installing chromium (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return shutil.which("chromium") or sys.exit("apt-get installed chromium but it is not on PATH")


def playwright_api():
    """``playwright.sync_api``, pip-installed into this Python when missing (no browser download)."""
    try:
        import playwright.sync_api as api
    except ImportError:
        print(f"installing playwright into {sys.prefix} (pip)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], check=True)
        import playwright.sync_api as api
    return api


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """JupyterLab serving a copy of ``notebooks/`` from a temporary folder."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.root = workdir / "root"
        shutil.copytree(ROOT / "notebooks", self.root / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),  # this checkout's fsvid
            "JUPYTER_CONFIG_DIR": str(workdir / "config"), "JUPYTER_DATA_DIR": str(workdir / "data"),
            "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "workspaces"),
            "JUPYTERLAB_SETTINGS_DIR": str(workdir / "settings"),
        }
        command = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ] + (["--allow-root"] if os.geteuid() == 0 else [])
        self.log = (workdir / "jupyter.log").open("w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root)
        self._wait_ready()

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {self.process.returncode}; see {self.log.name}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on {self.base} within {timeout:.0f} s; see {self.log.name}")

    def kernel_states(self) -> list[str]:
        return [s["kernel"]["execution_state"] for s in self.api("/api/sessions")]

    def stop(self) -> None:
        """Shut the server (and its kernels) down over REST, then make sure its pid is gone."""
        try:
            self.api("/api/shutdown", method="POST")
            self.process.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# ----------------------------------------------------------------------------- driving the page


def run_all_cells(page, lab: Lab, timeout: float = RUN_TIMEOUT_S) -> float:
    """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle."""
    started = time.time()
    page.locator(".jp-NotebookPanel:visible .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:visible", has_text="Run All Cells").first.click()
    time.sleep(1.0)
    prompts = page.locator(".jp-NotebookPanel:visible .jp-InputArea-prompt")
    while time.time() - started < timeout:
        texts = prompts.all_inner_texts()
        if texts and not any("*" in t for t in texts) and all(s == "idle" for s in lab.kernel_states()):
            time.sleep(0.5)  # the last outputs render
            if not any("*" in t for t in prompts.all_inner_texts()):
                return time.time() - started
        time.sleep(0.5)
    raise TimeoutError(f"cells still running after {timeout:.0f} s")


def output_problems(page) -> list[str]:
    """Error and stderr outputs of the visible notebook (what a student sees as red boxes)."""
    problems = []
    for mime in ("application/vnd.jupyter.error", "application/vnd.jupyter.stderr"):
        for text in page.locator(f'.jp-NotebookPanel:visible .jp-OutputArea-output[data-mime-type="{mime}"]').all_inner_texts():
            problems.append(f"{mime.rsplit('.', 1)[-1]}: {text.strip()[:300]}")
    return problems


def images(page) -> list[dict]:
    """Every output image of the visible notebook: loaded, its drawn and its shown size."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img')].map(img => ({
            widget: img.classList.contains('widget-image'), loaded: img.complete && img.naturalWidth > 0,
            natural: [img.naturalWidth, img.naturalHeight], shown: [img.clientWidth, img.clientHeight]}))""")


def widget_picture(page, index: int = 0) -> str:
    """A hash of the pixels of the ``index``-th widget picture (drawn on a canvas)."""
    data = page.evaluate("""(i) => {
        const img = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) img.widget-image')[i];
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        canvas.getContext('2d').drawImage(img, 0, 0);
        return canvas.toDataURL('image/png');
    }""", index)
    return hashlib.sha256(data.encode()).hexdigest()


def open_notebook(page, lab: Lab, name: str) -> None:
    page.goto(f"{lab.base}/lab/tree/notebooks/{name}.ipynb?reset&token={lab.token}")  # reset: no tabs restored
    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for(timeout=60_000)
    deadline = time.time() + 60
    while time.time() < deadline:  # the kernel started, without asking which one
        if page.locator(".jp-Dialog").count():
            raise AssertionError(f"JupyterLab asked for a kernel: {page.locator('.jp-Dialog').inner_text()[:200]}")
        if lab.kernel_states() and all(s == "idle" for s in lab.kernel_states()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the kernel of {name} did not start")


# ----------------------------------------------------------------------------- the checks


def turn_widgets_on(page) -> None:
    """Type ``interactive = True`` at the end of the parameters cell, as a student would."""
    parameters = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").filter(has_text="metrics_path = None").first
    parameters.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("interactive = True")
    page.keyboard.press("Escape")


def check_runs(page, lab: Lab, name: str, widgets: bool = False) -> str:
    """Open, (``widgets``: turn the widgets on,) Run All: no error or stderr box, every image loaded."""
    open_notebook(page, lab, name)
    kernel = page.locator(".jp-NotebookPanel:visible .jp-KernelName").first.inner_text()
    assert kernel.strip() == "Python 3 (fsvid)", f"kernel shown as {kernel!r}"
    if widgets:
        turn_widgets_on(page)
    seconds = run_all_cells(page, lab)
    problems = output_problems(page)
    assert not problems, "\n".join(problems)
    shown = images(page)
    assert shown, "no image rendered"
    assert all(i["loaded"] for i in shown), f"images that did not load: {[i for i in shown if not i['loaded']]}"
    return f"{len(shown)} images, Run All {seconds:.0f} s"


def rerun_with_widgets(page, lab: Lab) -> str:
    """The open notebook, with ``interactive = True`` typed in, run again: no error or stderr box."""
    turn_widgets_on(page)
    seconds = run_all_cells(page, lab)
    problems = output_problems(page)
    assert not problems, "\n".join(problems)
    return f"Run All {seconds:.0f} s"


def check_slider(page, name: str) -> str:
    """The widget pictures are shown at the size drawn; moving the first slider changes its picture."""
    pictures = page.locator(".jp-NotebookPanel:visible img.widget-image")
    assert pictures.count() == SLIDERS[name], f"{pictures.count()} widget pictures, expected {SLIDERS[name]}"
    for index in range(pictures.count()):
        pictures.nth(index).scroll_into_view_if_needed()
        natural, shown = pictures.nth(index).evaluate("img => [[img.naturalWidth, img.naturalHeight], [img.clientWidth, img.clientHeight]]")
        assert natural[0] > 0 and shown == natural, f"picture {index} drawn at {natural}, shown at {shown}"
    slider = page.locator(".jp-NotebookPanel:visible .widget-slider").first
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    value, before = readout.inner_text(), widget_picture(page)
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    deadline = time.time() + 30
    while time.time() < deadline and widget_picture(page) == before:
        time.sleep(0.3)
    assert readout.inner_text() != value, f"the slider did not move (readout still {value})"
    assert widget_picture(page) != before, "moving the slider did not change the picture"
    return f"{pictures.count()} widget pictures at their drawn size, slider {value} -> {readout.inner_text()}"


def check_notebook(page, lab: Lab, name: str, record: Callable[[str, Callable[[], str]], None]) -> None:
    """03: Run All at the defaults, then with the widgets on; the other widget notebooks: widgets on at once."""
    if name not in SLIDERS or name == "03_trm_tuples":
        record(f"{name}: runs all cells", lambda: check_runs(page, lab, name))
    if name == "03_trm_tuples":
        record(f"{name}: runs all cells with interactive = True", lambda: rerun_with_widgets(page, lab))
    elif name in SLIDERS:
        record(f"{name}: runs all cells with interactive = True", lambda: check_runs(page, lab, name, widgets=True))
    if name in SLIDERS:
        record(f"{name}: slider redraws", lambda: check_slider(page, name))


def main() -> int:
    started = time.time()
    executable = chromium()
    api = playwright_api()
    results: list[tuple[str, bool, str]] = []

    def record(test: str, check: Callable[[], str]) -> None:
        try:
            detail = check()
            results.append((test, True, detail))
            print(f"PASSED {test}: {detail}", flush=True)
        except Exception as error:  # noqa: BLE001 (each check reports and the next one runs)
            results.append((test, False, f"{type(error).__name__}: {error}"))
            print(f"FAILED {test}: {type(error).__name__}: {error}", flush=True)
            traceback.print_exc(limit=3)

    with tempfile.TemporaryDirectory(prefix="fsvid_browser_") as tmp:
        workdir = Path(tmp)
        lab = Lab(workdir)
        try:
            with api.sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    str(workdir / "chromium-profile"), executable_path=executable, headless=True,
                    args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
                page = context.new_page()
                for name in NOTEBOOKS:
                    check_notebook(page, lab, name, record)
                    for session in lab.api("/api/sessions"):  # one kernel at a time
                        lab.api(f"/api/sessions/{session['id']}", method="DELETE")
                context.close()
        finally:
            lab.stop()
        if not all(ok for _, ok, _ in results):
            print(f"JupyterLab's log: {(workdir / 'jupyter.log').read_text()[-3000:]}")
    passed = sum(ok for _, ok, _ in results)
    print(f"{'=' * 20} {passed} passed, {len(results) - passed} failed in {time.time() - started:.1f}s {'=' * 20}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
