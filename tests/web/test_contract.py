"""The contract in the repository: the error table of docs/api.md is the generated one,
every error code the code raises is declared, every route and method of the app (and
nothing else) is in the OpenAPI document, and schemathesis finds the live service
keeping it (no 5xx, declared statuses, content types, bodies and headers)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from falconproc.config import Settings
from falconproc.web.app import create_app
from falconproc.web.contract import ERRORS, errors_markdown, openapi_document
from falconproc.wiring import Components
from tests.support.corpus import ROOT
from tests.support.service import subprocess_env

TOKEN = "contract-token"
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def test_docs_api_md_shows_the_generated_error_table():
    assert errors_markdown() in (ROOT / "docs" / "api.md").read_text()


def test_the_wheel_ships_docs_api_md_and_the_cli_prints_it(tmp_path):
    """Built from what the Dockerfile's builder stage copies (its COPY lines), without
    the native modules (a few seconds): the wheel holds docs/api.md as a file, and the
    installed package prints it."""
    context = tmp_path / "context"
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, target = line.split()[1:]
            for source in sources:
                destination = context / target / Path(source).name if target.endswith("/") and \
                    not source.endswith("/") else context / target
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, destination, symlinks=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, destination)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheels"), str(context)],
                           env=subprocess_env(FALCONPROC_NO_EXTENSIONS="1"), capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("falconproc-*.whl")
    contract = (ROOT / "docs" / "api.md").read_text()
    with zipfile.ZipFile(wheel) as archive:
        assert archive.getinfo("falconproc/web/api.md").external_attr >> 28 != 0o12  # a file, not a link
        assert archive.read("falconproc/web/api.md").decode() == contract
        archive.extractall(tmp_path / "installed")
    env = subprocess_env(PYTHONPATH=str(tmp_path / "installed"), FALCONPROC_NO_EXTENSIONS="1")
    where = subprocess.run([sys.executable, "-c", "import falconproc; print(falconproc.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(tmp_path / "installed")), where  # not the repository's copy
    printed = subprocess.run([sys.executable, "-m", "falconproc.cli", "contract", "--markdown"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == contract


def test_every_raised_error_code_is_declared():
    declared = {(e.status, e.code) for e in ERRORS}
    raised = set()
    pattern = re.compile(r'(?:ApiError|_map)\(\s*falcon\.HTTP_(\d{3}),\s*"([a-z_]+)"')
    for path in (ROOT / "falconproc").rglob("*.py"):
        raised |= {(int(status), code) for status, code in pattern.findall(path.read_text())}
    raised |= {(416, "range_not_satisfiable")}  # serving.py writes that body itself
    assert len(raised) > 15, raised
    assert raised - declared == set(), "declare these in falconproc/web/contract.py ERRORS"


def _routes(tmp_path) -> set[tuple[str, str]]:
    settings = Settings(file_storage_path=tmp_path / "f", cache_path=tmp_path / "c", queue_path=tmp_path / "q")
    app = create_app(Components(settings))
    found, stack = set(), list(app._router._roots)  # noqa: SLF001 - a test walks the router
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.resource is not None:
            found |= {(node.uri_template, m) for m in METHODS if hasattr(node.resource, f"on_{m}")}
    return found


def test_openapi_describes_exactly_the_routes_of_the_app(tmp_path):
    document = openapi_document()
    described = {(re.sub(r"\{contentHash\}", "{content_hash}", path), method)
                 for path, ops in document["paths"].items() for method in ops}
    assert described == _routes(tmp_path)


def test_every_operation_declares_its_errors_with_the_error_body():
    for path, ops in openapi_document()["paths"].items():
        for method, op in ops.items():
            assert "X-Request-ID" in {p["name"] for p in op["parameters"]}
            for status, response in op["responses"].items():
                assert "X-Request-ID" in response["headers"], (path, method, status)
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (path, method, status)


@pytest.fixture(scope="module")
def contract_service(launcher, tmp_path_factory):
    svc = launcher.start(tmp_path_factory.mktemp("contract"), PROCESSOR_AUTH_TOKEN=TOKEN, UPLOAD_RATE_LIMIT="off")
    yield svc
    svc.stop()


def test_openapi_json_is_served_publicly(contract_service):
    resp = requests.get(contract_service.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == openapi_document()
    assert resp.json()["openapi"] == "3.1.0"


def test_schemathesis_finds_the_service_keeping_its_contract(contract_service, tmp_path):
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_schema_conformance,response_headers_conformance")
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [str(st), "run", contract_service.url + "/openapi.json", "--checks", checks,
         "--header", f"Authorization: Bearer {TOKEN}", "--max-examples", "25", "--seed", "12",
         "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "30", "--generation-database", "none"],
        env=subprocess_env(SCHEMATHESIS_HOOKS="tests.web.schemathesis_hooks"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    print(proc.stdout[-3000:])
    tested = re.search(r"(\d+) generated", proc.stdout)
    assert tested and int(tested.group(1)) > 100, proc.stdout[-3000:]
