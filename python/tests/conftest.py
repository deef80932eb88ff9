"""pytest setup: the tests import `gcpo` from PYTHONPATH (the build's python/ folder, as CTest's
"python: pytest" sets it) and the references from this folder."""
import glob
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def conformance_dirs():
    """tests/data/conformance of this checkout, plus GCPO_CONFORMANCE_DIR when set."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.environ.get("GCPO_REPO_CONFORMANCE_DIR",
                           os.path.join(here, "..", "..", "tests", "data", "conformance"))]
    if os.environ.get("GCPO_CONFORMANCE_DIR"):
        dirs.append(os.environ["GCPO_CONFORMANCE_DIR"])
    return dirs


def conformance_files():
    files = []
    for d in conformance_dirs():
        files += sorted(glob.glob(os.path.join(d, "*.json")))
    return files


@pytest.fixture
def load_case():
    def load(path):
        with open(path) as f:
            return json.load(f)
    return load
