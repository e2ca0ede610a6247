"""
Sphinx configuration: the manual from C{docs/*.rst}, and the API reference
from the package's epytext docstrings, built by pydoctor into C{api/} in the
same C{sphinx-build} run (as Twisted does).  C{make docs} builds it with
warnings as errors; pydoctor's warnings become Sphinx warnings.
"""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_setup = configparser.ConfigParser()
_setup.read(os.path.join(ROOT, "setup.cfg"))

project = "streamd"
author = "the streamd authors"
copyright = "2026, the streamd authors"
version = release = _setup["metadata"]["version"]

extensions = [
    "sphinx.ext.intersphinx",
    "pydoctor.sphinx_ext.build_apidocs",
]

exclude_patterns = ["_build"]
nitpicky = True
html_theme = "alabaster"
html_title = f"streamd {release}"
html_theme_options = {"description": "A live-data streaming daemon on Twisted", "fixed_sidebar": True}

# The build is offline: no inventory of Python's or Twisted's docs is
# fetched, so docstrings name those in C{...} rather than link them.  The
# only inventory is pydoctor's own, which lets these pages refer to the API
# with :py:mod:, :py:class: and so on.
intersphinx_mapping: dict = {}
pydoctor_url_path = "api/"
pydoctor_args = [
    "--project-name=streamd",
    f"--project-version={release}",
    "--docformat=epytext",
    "--project-url=../index.html",
    f"--project-base-dir={ROOT}",
    "--html-output={outdir}/api",
    "--warnings-as-errors",
    os.path.join(ROOT, "streamd"),
]
