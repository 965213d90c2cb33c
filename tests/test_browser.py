"""End to end in a real browser: JupyterLab on localhost, headless Chromium driven by Playwright.

A notebook with one cell calling a widget is opened and run, a slider is moved with the keyboard,
and the widget's summary and picture must change. This is the only test that sees what a learner
sees: the widget JavaScript, the comm messages between browser and kernel, the PNG swap.

Run it on its own with ``pytest -m browser``. It installs what is missing: the ``playwright``
Python package with pip (not ``playwright install``: Playwright's own browser downloads are not
needed) and Debian's ``chromium`` with apt-get. It skips only when Chromium cannot be installed.
Screenshots go to ``test-artifacts/browser/`` under the repository root (kept by CI).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CELL = ("from segedu.tools.widgets import dilation_explorer\n"
        "explorer = dilation_explorer(rates=(2, 2, 2))\n"
        "explorer")


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a Chromium binary, installed with apt-get when missing and possible."""
    path = _find_chromium()
    if path:
        return path
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("no chromium on PATH and no apt-get to install it")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        pytest.skip("no chromium on PATH, and installing it needs root (no sudo)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for command in ([*prefix, apt, "update", "-q"],
                    [*prefix, apt, "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
        log.append(done.stdout[-1500:] + done.stderr[-1500:])
    path = _find_chromium()
    if path is None:
        pytest.skip("chromium could not be installed with apt-get:\n" + "\n".join(log))
    return path


@pytest.fixture(scope="module")
def sync_playwright():
    """``playwright.sync_api.sync_playwright``, pip-installing the package when missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"pip install playwright failed:\n{done.stderr[-3000:]}"
        from playwright.sync_api import sync_playwright
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lab:
    def __init__(self, process: subprocess.Popen, url: str, token: str, log: Path):
        self.process, self.url, self.token, self.log = process, url, token, log

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as err:
            return f"(no server log: {err})"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free localhost port, serving a folder with one notebook;
    shut down whatever happens."""
    root = tmp_path_factory.mktemp("lab")
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "explorer",
                   "metadata": {}, "outputs": [], "source": CELL}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (root / "explorer.ipynb").write_text(json.dumps(notebook))
    port, token = _free_port(), secrets.token_hex(16)
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    tracker = root / ".settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)  # start the notebook's kernel without asking
    (tracker / "tracker.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    log = root / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
             "--ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
             "--ServerApp.allow_root=True", "--ServerApp.password="],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = _Lab(process, f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {process.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 90 s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _accept_kernel_dialog(page) -> None:
    """Answer JupyterLab's "Select Kernel" dialog, should it appear, with the default kernel."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        dialog.locator(".jp-mod-accept").first.click()
        dialog.first.wait_for(state="detached", timeout=10_000)


def _start_kernel(lab: _Lab, timeout: float = 180) -> None:
    """Start the notebook's kernel through the server's REST API and wait until it answers, so
    that the page attaches to a running kernel. Left to JupyterLab's auto-start, a kernel that
    starts slowly (the suite's workers importing torch beside it) was once interrupted while the
    page connected, leaving "No Kernel" and a 4-minute wait for a widget that never came."""
    api = f"{lab.url}/api"
    body = json.dumps({"path": "explorer.ipynb", "name": "explorer.ipynb", "type": "notebook",
                       "kernel": {"name": "python3"}}).encode()
    request = urllib.request.Request(f"{api}/sessions?token={lab.token}", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        kernel = json.load(answer)["kernel"]["id"]
    # The server reports "starting" until some client talks to the kernel: ask it directly.
    from jupyter_client import BlockingKernelClient
    from jupyter_core.paths import jupyter_runtime_dir

    client = BlockingKernelClient(
        connection_file=str(Path(jupyter_runtime_dir()) / f"kernel-{kernel}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
    except RuntimeError as err:
        pytest.fail(f"the kernel did not answer in {timeout:.0f} s ({err}):\n{lab.log_tail()}")
    finally:
        client.stop_channels()


def test_moving_a_slider_in_jupyterlab_redraws_the_widget(chromium, sync_playwright, lab):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dilation_explorer.png"
    console: list[str] = []
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.set_default_timeout(60_000)

        def fail(step: str, err: Exception) -> None:
            failure = ARTIFACTS / "failure.png"
            try:
                page.screenshot(path=str(failure), full_page=True)
            except Exception:  # the page itself may be gone
                pass
            pytest.fail(f"{step}: {type(err).__name__}: {err}\nscreenshot: {failure}\n"
                        f"browser console (last 15):\n" + "\n".join(console[-15:]) +
                        f"\nserver log:\n{lab.log_tail()}")

        step = "open the notebook"
        try:
            _start_kernel(lab)
            page.goto(f"{lab.url}/lab/tree/explorer.ipynb?token={lab.token}")
            editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
            editor.wait_for(state="visible")
            step = "wait for the kernel"
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
                state="attached", timeout=120_000)
            summary = page.locator(".widget-html-content", has_text="rates 2-2-2").first
            prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first
            for attempt in range(3):  # a run sent while the kernel connects can be dropped
                step = f"run the cell (attempt {attempt + 1})"
                _accept_kernel_dialog(page)
                editor.click()
                page.keyboard.press("Control+Enter")
                try:  # "[ ]:" becomes "[*]:" (queued or running), then "[1]:"
                    page.wait_for_function(
                        "el => !el.textContent.includes('[ ]')", arg=prompt.element_handle(),
                        timeout=30_000)
                except PlaywrightTimeout:
                    continue
                break
            step = "wait for the widget"
            summary.wait_for(state="visible", timeout=240_000)
            picture = page.locator(".widget-image").first
            picture.wait_for(state="visible")
            before_src = picture.get_attribute("src")
            step = "move the 'rate 1' slider"
            slider = page.locator(".widget-slider", has=page.locator(".widget-label",
                                                                       has_text="rate 1"))
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowRight")
            step = "wait for the widget to redraw"
            page.locator(".widget-html-content", has_text="rates 3-2-2").first.wait_for(
                state="visible", timeout=60_000)
            page.wait_for_function(
                "([sel, old]) => document.querySelector(sel).getAttribute('src') !== old",
                arg=[".widget-image", before_src], timeout=30_000)
            after_text = page.locator(".widget-html-content", has_text="rates 3-2-2").first
            after_text.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        except Exception as err:
            fail(step, err)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
