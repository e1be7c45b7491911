"""vdm_fast mirrors vdm_ref name by name and signature by signature (DESIGN.md, Layering).

The name check is `../shared/tools/api_parity.py`'s own logic (imported from that path when the
shared tools sit beside the repository, else re-implemented below with `ast`, the same rules).
The signature check imports both backends and compares `inspect.signature`: parameter names,
order, kinds and defaults must match; vdm_fast may add keyword-only parameters with defaults only
where listed in EXTRA_KEYWORDS with the reason (each is documented in its docstring).
"""

import ast
import importlib
import importlib.util
import inspect
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
REF, FAST = ROOT / "vdm_ref", ROOT / "vdm_fast"
TOOL = ROOT.parent / "shared" / "tools" / "api_parity.py"


def _load_tool():
    if not TOOL.exists():
        return None
    spec = importlib.util.spec_from_file_location("_api_parity_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tool = _load_tool()


def _public_names(path, provided=False):
    """The tool's rule: __all__ if given; else top-level defs/classes not starting with '_'
    (with provided=True also names imported or assigned there: re-exports count)."""
    if _tool is not None:
        return _tool.public_names(path, provided)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names.add(node.name)
        elif provided and isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names if not (a.asname or a.name).startswith("_"))
        elif provided and isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_"))
    return names


def _not_mirrored(path):
    if _tool is not None:
        return _tool.not_mirrored(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__mirror__" for t in n.targets)
               and isinstance(n.value, ast.Constant) and n.value.value is False for n in tree.body)


MIRRORED = sorted(str(f.relative_to(REF)) for f in REF.rglob("*.py")
                  if not f.name.startswith("_") and not _not_mirrored(f))

# Keyword-only parameters vdm_fast adds, with defaults, and why (see the functions' docstrings).
EXTRA_KEYWORDS = {
    "progress": "optional progress callback called from the compiled loop (vdm_fast.samplers)",
    "progress_every": "how often the progress callback runs (vdm_fast.samplers)",
    "dtype": "compute dtype of a fast module, float32 or the bf16 option (e.g. vdm_fast.text_encoder)",
}


@pytest.mark.parametrize("rel", MIRRORED)
def test_every_mirrored_name_has_a_vdm_fast_twin(rel):
    twin = FAST / rel
    fast_init = _public_names(FAST / "__init__.py", True) if (FAST / "__init__.py").exists() else set()
    have = (_public_names(twin, True) if twin.exists() else set()) | fast_init
    missing = sorted(_public_names(REF / rel) - have)
    assert not missing, f"vdm_ref/{rel}: no vdm_fast twin for {missing}"


def test_the_tool_and_this_test_agree_on_the_rules():
    # The diffusion modules are mirrored (not backend-free); the oracle is test infrastructure.
    for rel in ("schedule.py", "diffusion.py", "parameterization.py", "losses.py", "samplers.py",
                "guidance.py", "conditioning.py", "metrics.py"):
        assert rel in MIRRORED
    assert "oracle.py" not in MIRRORED


def test_the_network_is_checked_like_every_other_mirrored_package():
    # The U-Net's twin exists (vdm_fast/network): its names and signatures are checked, not excused.
    network = [rel for rel in MIRRORED if pathlib.Path(rel).parts[0] == "network"]
    assert "network/unet.py" in network and "network/attention.py" in network, network
    with_names = {rel for rel in network if _public_names(REF / rel)}
    unchecked = with_names - {rel for rel, _ in _signature_cases()}
    assert not unchecked, f"network modules left out of the signature check: {sorted(unchecked)}"


def _module_name(rel, package):
    parts = list(pathlib.Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package] + parts)


# The signature check covers the diffusion maths and samplers (issue 4's diffusion half) and the
# network (its other half); other mirrored modules join it by being listed here.
SIGNATURE_CHECKED = ("schedule.py", "diffusion.py", "parameterization.py", "losses.py", "samplers.py",
                     "guidance.py", "conditioning.py", "metrics.py", "network/")


def _signature_cases():
    cases = []
    for rel in MIRRORED:
        if not any(rel == m or rel.startswith(m) for m in SIGNATURE_CHECKED):
            continue
        for name in sorted(_public_names(REF / rel)):
            cases.append((rel, name))
    return cases


def _fast_object(rel, name):
    module = importlib.import_module(_module_name(rel, "vdm_fast"))
    if hasattr(module, name):
        return getattr(module, name)
    return getattr(importlib.import_module("vdm_fast"), name)


@pytest.mark.parametrize("rel,name", _signature_cases())
def test_signatures_match_the_reference(rel, name):
    ref = getattr(importlib.import_module(_module_name(rel, "vdm_ref")), name)
    fast = _fast_object(rel, name)
    if not callable(ref):
        return
    assert callable(fast), f"vdm_fast twin of {rel}:{name} is not callable"
    ref_params = list(inspect.signature(ref).parameters.values())
    fast_params = list(inspect.signature(fast).parameters.values())
    extra = fast_params[len(ref_params):]
    shared = fast_params[: len(ref_params)]
    assert [(p.name, p.kind) for p in shared] == [(p.name, p.kind) for p in ref_params], (
        f"{rel}:{name}: vdm_ref{inspect.signature(ref)} vs vdm_fast{inspect.signature(fast)}")
    for r, f in zip(ref_params, shared):
        assert (r.default is inspect.Parameter.empty) == (f.default is inspect.Parameter.empty), (rel, name, r.name)
        if r.default is not inspect.Parameter.empty:
            assert r.default == f.default, f"{rel}:{name}: default of {r.name}: {r.default!r} vs {f.default!r}"
    for p in extra:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty, (
            f"{rel}:{name}: extra parameter {p.name} must be keyword-only with a default")
        assert p.name in EXTRA_KEYWORDS, f"{rel}:{name}: undocumented extra parameter {p.name}"
        assert p.name in (fast.__doc__ or "") or p.name in (inspect.getmodule(fast).__doc__ or ""), (
            f"{rel}:{name}: extra parameter {p.name} is not documented")
