"""The generated OpenAPI document and the resource declarations it is made from."""

from __future__ import annotations

import json
import subprocess
import sys

from astcti.api.openapi import PATH_PARAM_RE, document
from astcti.api.protocol import REQUESTS


def test_every_resource_is_unique_and_its_placeholders_are_declared_fields() -> None:
    doc = document()
    seen: dict[tuple[str, str], str] = {}
    for spec in REQUESTS.values():
        if not spec.resource:
            continue
        method, path = spec.resource
        assert method in ("GET", "POST", "PUT", "DELETE"), spec.name
        assert path.startswith("/api/v1/"), spec.name
        assert (method, path) not in seen, f"{spec.name} and {seen[(method, path)]} share {path}"
        seen[(method, path)] = spec.name
        names = {f.name for f in spec.fields}
        for placeholder in PATH_PARAM_RE.findall(path):
            assert placeholder in names, f"{spec.name}: {{{placeholder}}} is not a field"
        operation = doc["paths"][path][method.lower()]
        in_path = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert in_path == set(PATH_PARAM_RE.findall(path))


def test_fields_carry_their_limits_into_the_schema() -> None:
    doc = document()
    resume = doc["paths"]["/api/v1/requests/resume"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert resume["required"] == ["extension", "lastseq"]
    assert resume["properties"]["lastseq"]["type"] == "integer"
    assert resume["properties"]["lastseq"]["minimum"] == 0
    # a text field whose every integer is valid text says so (the server reads 101 as "101")
    text, number = resume["properties"]["extension"]["anyOf"]
    assert (text["type"], text["maxLength"], number["type"]) == ("string", 32, "integer")
    queue = doc["paths"]["/api/v1/requests/queuestats"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["queue"]
    assert {"type": "integer", "minimum": -(10 ** 17), "maximum": 10 ** 17} in \
        queue["anyOf"][0]["anyOf"]
    login = doc["paths"]["/api/v1/requests/login"]["post"]
    assert login["security"] == []  # the only way in needs no credentials


def test_the_module_prints_the_document() -> None:
    out = subprocess.run([sys.executable, "-m", "astcti.api.openapi"], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["openapi"].startswith("3.")
