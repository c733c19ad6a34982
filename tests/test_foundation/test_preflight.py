"""Preflight: the use case with a small fake probe, the real probe, the container hook, and the CLI end to end
(table, JSON, and a real missing/broken package in a subprocess)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from dependency_injector import providers

from apex_x.adapters.environment_probe import ImportlibEnvironmentProbe
from apex_x.adapters.models.profiles import preflight_requirements
from apex_x.adapters.models.profiles.worldclass import REQUIREMENTS as WORLDCLASS_REQUIREMENTS
from apex_x.application.preflight import CheckResult, PreflightContext, PreflightUseCase
from apex_x.application.preflight_requirements import (
    BASE_REQUIREMENTS,
    at_least,
    release_tuple,
    requirements_of,
)
from apex_x.cli import EXIT_OK, EXIT_USER, main
from apex_x.container import create_container
from apex_x.domain.environment import AcceleratorProbe, FolderProbe, PackageProbe
from apex_x.installation import install_command

from .conftest import REPO_ROOT, make_import_blocker


class FakeProbe:
    """Every package installed at a given version unless listed as missing/broken/old."""

    def __init__(self, *, missing=(), broken=(), versions=None, cuda=False, writable=True, python="3.11.7"):
        self.missing, self.broken, self.versions = set(missing), set(broken), dict(versions or {})
        self.cuda, self.writable, self.python = cuda, writable, python
        self.imported: list[str] = []

    def python_version(self) -> str:
        return self.python

    def platform(self) -> str:
        return "linux"

    def package(self, import_name: str, distribution: str) -> PackageProbe:
        self.imported.append(distribution)
        if distribution in self.missing:
            return PackageProbe(import_name, distribution, False, None, missing=True, error="No module named x")
        if distribution in self.broken:
            return PackageProbe(import_name, distribution, False, "1.0", error="ImportError: broken")
        return PackageProbe(import_name, distribution, True, self.versions.get(distribution, "99.0"))

    def accelerator(self) -> AcceleratorProbe:
        if self.cuda:
            return AcceleratorProbe(True, True, 1, "Fake GPU", "9.0", 80.0, "12.8")
        return AcceleratorProbe(True, False, torch_cuda_version="12.8")

    def folder(self, path: str) -> FolderProbe:
        return FolderProbe(path, False, self.writable, "will be created" if self.writable else "read-only")


def _run(profile: str = "worldclass", extra=None, **fake):
    return PreflightUseCase(FakeProbe(**fake), extra, preflight_requirements()).execute(profile, "/out")


def _row(report, name: str) -> CheckResult:
    return next(result for result in report.results if result.name == name)


def test_all_present_passes_and_lists_every_package() -> None:
    report = _run()
    assert report.ok and report.failure_message() == ""
    names = [r.name for r in report.results if r.category == "package"]
    assert names == [r.distribution for r in BASE_REQUIREMENTS + WORLDCLASS_REQUIREMENTS]
    assert {r.name for r in report.results} >= {"python", "cuda", "output folder"}


def test_base_profile_does_not_touch_worldclass_packages() -> None:
    probe = FakeProbe(missing={"peft"})
    report = PreflightUseCase(probe, None, preflight_requirements()).execute("base", "/out")
    assert report.ok and "peft" not in probe.imported


def test_missing_package_fails_naming_it_and_the_install_command() -> None:
    report = _run(missing={"peft"}, broken={"safetensors"})
    assert not report.ok
    assert report.missing_packages == ["peft", "safetensors"]
    assert _row(report, "peft").status == "missing"
    assert _row(report, "safetensors").status == "import failed"
    message = report.failure_message()
    assert "peft" in message and "safetensors" in message and install_command("worldclass") in message
    assert report.to_dict()["install_command"] == install_command("worldclass")


def test_missing_base_package_points_at_the_base_install() -> None:
    report = _run("base", missing={"pycocotools"})
    assert report.missing_packages == ["pycocotools"]
    assert install_command() in report.failure_message()


def test_too_old_package_fails_with_the_minimum() -> None:
    report = _run(versions={"torch": "2.5.1+cu121"})
    row = _row(report, "torch")
    assert row.status == "too old" and row.minimum == "2.10" and row.installed == "2.5.1+cu121"
    assert "need >= 2.10" in report.failure_message()


def test_unknown_or_odd_versions_do_not_block_an_importable_package() -> None:
    report = _run(versions={"tqdm": None, "pycocotools": "unknown"})
    assert report.ok and _row(report, "tqdm").installed is None and _row(report, "pycocotools").ok


def test_old_python_fails() -> None:
    assert _row(_run(python="3.9.18"), "python").failed


def test_triton_is_optional_without_cuda_and_required_with_it() -> None:
    without = _run(missing={"triton"})
    assert without.ok and not _row(without, "triton").required
    with_cuda = _run(missing={"triton"}, cuda=True)
    assert not with_cuda.ok and with_cuda.missing_packages == ["triton"]
    assert "Fake GPU" in _row(with_cuda, "cuda").detail
    assert with_cuda.to_dict()["cuda"]["device_name"] == "Fake GPU"


def test_unwritable_output_folder_fails() -> None:
    report = _run(writable=False)
    assert not report.ok and "output folder" in report.failure_message()


def _weights_check(context: PreflightContext) -> list[CheckResult]:
    reachable = context.settings.model.teacher_backbone == "local/dino"
    return [CheckResult("backbone weights", "weights", ok=reachable, required=True, status="ok" if reachable else "missing")]


def _crashing_check(context: PreflightContext) -> list[CheckResult]:
    raise RuntimeError("plug-in bug")


def test_extra_checks_run_per_profile_and_a_crash_is_a_failed_row() -> None:
    extra = {"worldclass": [_weights_check], "base": [_crashing_check]}
    base = _run("base", extra)
    assert "backbone weights" not in {r.name for r in base.results}
    assert _row(base, "_crashing_check").status == "crashed" and not base.ok
    worldclass = _run("worldclass", extra)
    assert {"backbone weights", "_crashing_check"} <= {r.name for r in worldclass.results}


def test_container_hook_registers_worldclass_checks(tmp_path: Path) -> None:
    container = create_container()
    container.environment_probe.override(providers.Object(FakeProbe()))
    container.preflight_checks.override(
        providers.Dict(base=providers.List(), worldclass=providers.List(providers.Object(_weights_check)))
    )
    assert _row(container.preflight().execute("worldclass", str(tmp_path)), "backbone weights").failed
    assert "backbone weights" not in {r.name for r in container.preflight().execute("base", str(tmp_path)).results}


def test_version_comparison() -> None:
    assert release_tuple("2.14.1+cu130") == (2, 14, 1)
    assert at_least("2.10.0", "2.10") and at_least("0.21.2", "0.10") and not at_least("2.9.1", "2.10")
    assert at_least("3.10.0rc1", "3.10") and not at_least("0.9", "0.10")


def test_minimum_versions_match_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {}
    for text in [*project["dependencies"], *project["optional-dependencies"]["worldclass"]]:
        requirement = requirements.Requirement(text)
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        declared[requirement.name.lower()] = floors[0] if floors else None
    for requirement in requirements_of("worldclass", preflight_requirements()):
        assert declared.get(requirement.distribution) == requirement.minimum, requirement.distribution


def test_real_probe_reports_installed_missing_and_broken_packages(tmp_path: Path, monkeypatch) -> None:
    probe = ImportlibEnvironmentProbe()
    found = probe.package("yaml", "pyyaml")
    assert found.importable and found.version and at_least(found.version, "6.0")
    absent = probe.package("apex_x_no_such_module", "apex-x-no-such-module")
    assert not absent.importable and absent.missing and absent.version is None
    (tmp_path / "apex_x_broken_probe").mkdir()
    (tmp_path / "apex_x_broken_probe" / "__init__.py").write_text("import apex_x_dependency_that_is_gone\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = probe.package("apex_x_broken_probe", "apex-x-broken-probe")
    assert not broken.importable and not broken.missing
    assert "apex_x_dependency_that_is_gone" in (broken.error or "")


def test_real_probe_checks_folders_without_creating_them(tmp_path: Path) -> None:
    probe = ImportlibEnvironmentProbe()
    new = probe.folder(str(tmp_path / "a" / "b"))
    assert new.writable and not new.exists and not (tmp_path / "a").exists()
    assert probe.folder(str(tmp_path)).exists
    (tmp_path / "file").write_text("x")
    blocked = probe.folder(str(tmp_path / "file" / "out"))
    assert not blocked.writable and "not a folder" in blocked.detail
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # the write test left nothing behind


def test_cli_table_and_json_for_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "reports" / "preflight.json"
    code = main(["preflight", "--profile", "base", "--output-json", str(output), "--output-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    for requirement in BASE_REQUIREMENTS:
        assert requirement.distribution in out
    assert "torch" in out and "cuda" in out and "output folder" in out and "OK:" in out
    data = json.loads(output.read_text())
    assert data["ok"] is True and data["profile"] == "base"
    assert {p["name"] for p in data["packages"]} == {r.distribution for r in BASE_REQUIREMENTS}
    import torch

    assert data["cuda"]["available"] == torch.cuda.is_available()
    torch_row = next(p for p in data["packages"] if p["name"] == "torch")
    assert torch_row["installed"] == torch.__version__ and torch_row["minimum"] == "2.10"
    assert data["output_dir"]["writable"] is True and data["output_dir"]["path"] == str(tmp_path / "run")


@pytest.fixture
def hub_cache_with_dinov2(tmp_path: Path) -> Path:
    """A Hugging Face cache folder where facebook/dinov2-large is a tiny random DINOv2 (never downloaded)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    snapshot_id = "0" * 40
    repo = tmp_path / "hf_cache" / "models--facebook--dinov2-large"
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(str(repo / "snapshots" / snapshot_id))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot_id)
    return tmp_path / "hf_cache"


def test_worldclass_as_in_the_seed_exits_0_and_lists_versions(
    run_cli, tmp_path: Path, hub_cache_with_dinov2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user guide's command as written; the worldclass checks include the DINOv2 weights (here from the cache).
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache_with_dinov2))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_cli("preflight", "--profile", "worldclass", "--output-json", "x.json")
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["ok"] and data["missing_packages"] == [] and data["install_command"] is None
    for row in data["packages"]:
        assert row["installed"], row
        assert f"{row['name']} " in result.stdout and row["installed"] in result.stdout
    assert {"transformers", "peft", "safetensors"} <= {row["name"] for row in data["packages"]}
    assert data["triton"]["available"] == (sys.platform == "linux")


def test_worldclass_with_peft_missing_and_safetensors_broken_fails_for_real(run_cli, tmp_path: Path) -> None:
    blocker = make_import_blocker(tmp_path / "site", missing=("peft",), broken=("safetensors",))
    result = run_cli("preflight", "--profile", "worldclass", "--output-json", "x.json", python_path=blocker)
    assert result.returncode == EXIT_USER, result.stdout + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    assert "peft" in error_lines[0] and "safetensors" in error_lines[0]
    # this checkout is an editable install: the hint is the command that works for it, not the index's
    assert f'pip install -e "{REPO_ROOT}[worldclass]"' in error_lines[0] or 'pip install -e ".[worldclass]"' in error_lines[0]
    assert "MISSING" in result.stdout and "IMPORT FAILED" in result.stdout
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["ok"] is False and data["missing_packages"] == ["peft", "safetensors"]
