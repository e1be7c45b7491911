"""docs/tour.md cannot rot: scripts/make_tour.py runs at small size, and every figure, source link
and vdm_ref function the page names must exist — in a fresh run and in the committed page.
"""

import importlib
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)]+)\)")
NAME = re.compile(r"`(vdm_ref(?:\.\w+)+)`")


def _make_tour():
    spec = importlib.util.spec_from_file_location("make_tour", ROOT / "scripts" / "make_tour.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resolve(qualname):
    """The object a dotted vdm_ref name refers to: the longest importable module, then attributes."""
    parts = qualname.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(qualname)


def _check_page(md_path, figures):
    """Every image, relative link and vdm_ref name of the page exists; every figure is shown."""
    text = md_path.read_text(encoding="utf-8")
    base = md_path.parent
    images = IMAGE.findall(text)
    assert sorted(pathlib.Path(p).name for p in images) == sorted(figures), images
    for p in images:
        data = (base / p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, f"{p} is not a real PNG figure"
    links = [p for p in LINK.findall(text) if not p.startswith(("http://", "https://", "#"))]
    assert any(p.endswith(".py") for p in links), "no source links"
    for p in links:
        assert (base / p).exists(), f"broken link {p} in {md_path}"
    names = set(NAME.findall(text))
    assert {"vdm_ref.diffusion.ancestral_variance", "vdm_ref.samplers.sample_pc",
            "vdm_ref.conditioning.sample_conditional", "vdm_ref.schedule.logsnr_schedule_cosine"} <= names
    for name in names:
        assert callable(_resolve(name)), name
    for eq in ("Eq. 1", "Eq. 3", "Eq. 4", "Eq. 5", "Eq. 7"):
        assert eq in text, eq


def test_the_tour_generates_at_small_size_with_every_figure_and_name(tmp_path):
    tour = _make_tour()
    out = tmp_path / "docs"
    assert tour.main(["--out-dir", str(out), "--samples", "16", "--steps", "4"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(["tour.md"] + [f"assets/tour/{f}" for f in tour.FIGURES]), written
    _check_page(out / "tour.md", tour.FIGURES)
    text = (out / "tour.md").read_text(encoding="utf-8")
    assert "--samples 16 --steps 4" in text  # the page says the command that made it
    tour.check_outputs_are_ours(out)  # a rerun may replace what this run wrote (raises otherwise)


@pytest.mark.parametrize("foreign", ["tour.md", "assets/tour/schedule.png"])
def test_the_tour_refuses_to_replace_files_it_did_not_write(tmp_path, foreign):
    tour = _make_tour()
    path = tmp_path / foreign
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"# the user's own notes\n")
    assert tour.main(["--out-dir", str(tmp_path), "--samples", "16", "--steps", "4"]) == 2
    assert path.read_bytes() == b"# the user's own notes\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [foreign]


def test_the_committed_tour_names_only_things_that_exist():
    tour = _make_tour()
    md = ROOT / "docs" / "tour.md"
    assert tour.MARKER in md.read_text(encoding="utf-8").splitlines()[0]
    _check_page(md, tour.FIGURES)
