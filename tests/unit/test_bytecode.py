"""The byte code check of the built artifact (scripts/bytecode.py): a .py counts as compiled only when
CPython 3.13 would use its .pyc as it is (issue 31: every cold start compiled every module)."""

from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from scripts import bytecode

SOURCE = "def handler(event, context):\n    return {'statusCode': 200}\n"


def a_build(tmp_path: Path) -> Path:
    """A sam build's shape: one function (its package) and one layer (python/)."""
    build = tmp_path / "build"
    (build / "DownloadFunction" / "cas_download").mkdir(parents=True)
    (build / "DownloadFunction" / "cas_download" / "app.py").write_text(SOURCE)
    (build / "DependenciesLayer" / "python" / "dep").mkdir(parents=True)
    (build / "DependenciesLayer" / "python" / "dep" / "__init__.py").write_text("VALUE = 1\n")
    return build


def python_313() -> list[str] | None:
    if sys.implementation.cache_tag == bytecode.LAMBDA_TAG:
        return [sys.executable]
    return bytecode.host_python()


def test_the_build_is_split_into_what_lambda_puts_in_var_task_and_opt_python(tmp_path: Path) -> None:
    # Given a build with a function and a layer
    build = a_build(tmp_path)

    # Then the function compiles for /var/task and the layer's python/ for /opt/python
    assert bytecode.artifacts(build) == [
        bytecode.Artifact(build / "DependenciesLayer" / "python", "/opt/python"),
        bytecode.Artifact(build / "DownloadFunction", "/var/task"),
    ]


def test_a_build_without_byte_code_names_every_file(tmp_path: Path) -> None:
    # Given a build as sam makes it (no .pyc)
    build = a_build(tmp_path)

    # Then each .py is named: 3.13 would compile it at every cold start
    assert bytecode.check_build(build) == [
        "DependenciesLayer/python/dep/__init__.py: no .pyc",
        "DownloadFunction/cas_download/app.py: no .pyc",
    ]


def test_byte_code_of_another_python_is_refused(tmp_path: Path) -> None:
    # Given a .pyc written by another Python under 3.13's file name (a wrong magic number)
    source = tmp_path / "app.py"
    source.write_text(SOURCE)
    pyc = tmp_path / "__pycache__" / "app.cpython-313.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"\xa7\r\r\n" + bytes(12) + b"code")

    # Then 3.13 would not use it
    assert bytecode.pyc_problem(source) == "magic b'\\xa7\\r\\r\\n' is not 3.13's"


def test_timestamp_byte_code_is_refused_lambda_keeps_no_reliable_mtime(tmp_path: Path) -> None:
    # Given a .pyc with 3.13's magic, validated by the source's mtime (the default mode)
    source = tmp_path / "app.py"
    source.write_text(SOURCE)
    pyc = tmp_path / "__pycache__" / "app.cpython-313.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(bytecode.LAMBDA_MAGIC + bytes(12) + b"code")

    # Then it is refused: only unchecked-hash byte code survives a zip as it is
    assert bytecode.pyc_problem(source) == "not an unchecked-hash .pyc"


@pytest.mark.skipif(python_313() is None, reason="needs CPython 3.13 (make lambda-runtime runs this on 3.13)")
def test_a_build_compiled_by_cpython_313_passes_and_an_edited_source_does_not(tmp_path: Path) -> None:
    # Given a build compiled as scripts/bytecode.py does, by a real CPython 3.13
    build = a_build(tmp_path)
    command = python_313()
    assert command is not None
    for artifact in bytecode.artifacts(build):
        subprocess.run([*command, *bytecode.compile_argv(artifact)], check=True)

    # Then every file passes
    assert bytecode.check_build(build) == []
    # and the path in tracebacks is where Lambda puts the file
    pyc = build / "DownloadFunction" / "cas_download" / "__pycache__" / "app.cpython-313.pyc"
    assert b"/var/task/cas_download/app.py" in pyc.read_bytes()

    # When a source changes after it was compiled
    (build / "DownloadFunction" / "cas_download" / "app.py").write_text(SOURCE + "# edited\n")

    # Then its byte code no longer counts
    assert bytecode.check_build(build) == ["DownloadFunction/cas_download/app.py: compiled from other source"]


def test_this_pythons_own_byte_code_is_refused_unless_it_is_313(tmp_path: Path) -> None:
    # Given a .pyc this interpreter compiled (unchecked-hash), renamed to 3.13's name
    source = tmp_path / "app.py"
    source.write_text(SOURCE)
    pyc = tmp_path / "__pycache__" / "app.cpython-313.pyc"
    py_compile.compile(
        str(source), cfile=str(pyc), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )

    # Then it passes only if this interpreter is 3.13
    problem = bytecode.pyc_problem(source)
    if sys.implementation.cache_tag == bytecode.LAMBDA_TAG:
        assert problem is None
    else:
        assert problem is not None
        assert problem.endswith("is not 3.13's")


def test_a_relative_build_directory_is_compiled_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given `make build`'s relative build directory, and a 3.13 that runs elsewhere (the chroot's
    # compileall starts from its own /), recording what it is asked to compile
    a_build(tmp_path)
    monkeypatch.chdir(tmp_path)
    asked: list[list[str]] = []
    monkeypatch.setattr(bytecode, "host_python", lambda: ["python3.13"])
    monkeypatch.setattr(bytecode, "_run", lambda argv, log: asked.append(argv))
    # When the build is compiled
    bytecode.compile_build(Path("build"), tmp_path / "bytecode.log")
    # Then each artifact is named by its absolute path, whatever the directory 3.13 runs in
    roots = sorted(argv[-1] for argv in asked)
    assert roots == [
        str(tmp_path / "build" / "DependenciesLayer" / "python"),
        str(tmp_path / "build" / "DownloadFunction"),
    ]
    assert all(Path(argv[argv.index("-s") + 1]).is_absolute() for argv in asked)
