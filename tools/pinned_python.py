"""Runs a tools/ script under a Python interpreter that has the script's pinned packages.

A script calls ensure_pinned_interpreter() before importing any of those packages. The first process
replaces itself with the same script and arguments run under --python when given, else under a virtual
environment holding the pinned packages (created when missing); an environment variable marks the
re-executed process, which goes on with its work.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

# pip index of the CPU-only torch wheels (PyPI's default torch on Linux pulls in CUDA).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def child_marker(script: Path) -> str:
    """One marker per script, so that a pinned script started by another one still sets up its own."""
    return f"DENDRO_PINNED_{script.stem.upper()}_CHILD"


def can_import(modules: Sequence[str]) -> bool:
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def prepare_venv(venv_dir: Path, packages: Sequence[str], extra_index_url: str | None, tag: str) -> str:
    """Returns the interpreter of venv_dir, creating the venv when missing and installing the pins."""
    python = venv_dir / "bin" / "python"
    if not python.exists():
        print(f"{tag}: creating {venv_dir} and installing {' '.join(packages)}", file=sys.stderr, flush=True)
        venv.create(venv_dir, with_pip=True)
    # Installing on every run costs little when the pins are met, and completes a venv that an interrupted
    # install left short or that was made for older pins.
    index_args = ["--extra-index-url", extra_index_url] if extra_index_url else []
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *index_args, *packages])
    if install.returncode != 0:
        raise SystemExit(f"{tag}: pip could not install {' '.join(packages)} into {venv_dir}")
    return str(python)


def ensure_pinned_interpreter(script: Path, packages: Sequence[str], venv_dir: Path, python: str | None,
                              extra_index_url: str | None = None,
                              run_here_if_importable: Sequence[str] = ()) -> None:
    """Returns when this process has the packages; otherwise execs script (with this process's arguments)
    under `python`, or, when that is None, under venv_dir's interpreter. With run_here_if_importable, a
    running interpreter that imports all of those modules is kept instead of a venv."""
    marker = child_marker(script)
    if os.environ.get(marker) == "1":
        return
    tag = script.stem
    if python is None:
        if run_here_if_importable and can_import(run_here_if_importable):
            return
        python = prepare_venv(venv_dir, packages, extra_index_url, tag)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(python, [python, str(script.resolve()), *sys.argv[1:]], {**os.environ, marker: "1"})
    except OSError as error:
        raise SystemExit(f"{tag}: cannot run the interpreter {python}: {error.strerror}")
