"""The program that runs INSIDE the grading sandbox: execute a submission's cells, call the probe.

It is started by :mod:`course_lib.grading.sandbox` as ``python /opt/grader/worker.py`` with the
job on stdin (JSON: the shared cells, the cells of one question, the probe's source, the names it
takes, calls to disable). It runs the cells, calls the probe on the submission's objects and writes
one line, ``@@COURSE-GRADER-RESULT@@ {json}``, to its stdout; whatever the submission prints goes to
stderr. Nothing here is trusted: the submission runs in this very interpreter and can change any of
it. The trusted side therefore only reads plain JSON back from this process, checks the exact types
itself and compares the values with the reference solution's, which never enters the sandbox.

Encoding of returned values (plain JSON, types kept exact): ``None``, ``bool``, ``int``, ``float``
and ``str`` as themselves (only when ``type(x)`` is exactly that class); ``list`` as a JSON list;
``tuple`` as ``{"__tuple__": [...]}``; ``dict`` with ``str`` keys as ``{"__dict__": {...}}``;
``numpy.ndarray`` as ``{"__ndarray__": {"dtype", "shape", "data"}}``; ``torch.Tensor`` as
``{"__tensor__": {...}}`` (detached, on the CPU); anything else (a subclass, a NumPy scalar, an
object) as ``{"__object__": "module.QualName"}``, which never equals a reference value.

Standard library only at import time: it must start even where ``course_lib`` is not mounted.
"""
import ast
import json
import os
import sys
import traceback

MAGIC = "@@COURSE-GRADER-RESULT@@"
MAX_RESULT = 32 * 2**20


def _qualname(x) -> str:
    t = type(x)
    return f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"


def encode(x, depth=0):
    """Plain-JSON form of ``x`` with exact types (see the module docstring)."""
    if depth > 20:
        return {"__object__": "too-deep"}
    t = type(x)
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        return x
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"__tuple__": [encode(v, depth + 1) for v in x]}
    if t is dict and all(type(k) is str for k in x):
        return {"__dict__": {k: encode(v, depth + 1) for k, v in x.items()}}
    mod = getattr(t, "__module__", "")
    if mod == "numpy" and t.__name__ == "ndarray":
        return {"__ndarray__": {"dtype": str(x.dtype), "shape": list(x.shape),
                                "data": x.ravel().tolist() if x.dtype.kind in "biuf" else None}}
    if mod == "torch" and t.__name__ in ("Tensor", "Parameter"):
        y = x.detach().cpu()
        return {"__tensor__": {"dtype": str(y.dtype), "shape": list(y.shape),
                               "data": y.reshape(-1).tolist() if not y.is_complex() else None,
                               "requires_grad": bool(x.requires_grad), "class": t.__name__}}
    return {"__object__": _qualname(x)}


def _transform(source: str) -> str:
    """IPython syntax (magics, ``!cmd``) to Python, when IPython is importable."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _disable(dotted: str) -> None:
    """Replace ``module.attr`` (e.g. ``torch.nn.functional.cross_entropy``) by a function that raises."""
    import importlib

    mod_name, _, attr = dotted.rpartition(".")
    parts = mod_name.split(".")
    obj = None
    for i in range(len(parts), 0, -1):               # longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            for p in parts[i:]:
                obj = getattr(obj, p)
            break
        except (ImportError, AttributeError):
            obj = None
    if obj is None:
        return

    def _forbidden(*args, **kwargs):
        raise RuntimeError(f"{dotted} is not allowed in this question: write the formula")

    try:
        setattr(obj, attr, _forbidden)
    except (AttributeError, TypeError):
        pass


def main() -> None:
    job = json.loads(sys.stdin.read())
    out = os.dup(1)                                   # our channel; the submission prints to stderr
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)
    for dotted in job.get("forbid_calls", []):
        _disable(dotted)
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    cell_errors = []
    # Shared cells (setup): statement by statement, so that one failing import does not hide the rest.
    for i, src in enumerate(job.get("shared", [])):
        try:
            tree = ast.parse(_transform(src))
        except SyntaxError as e:
            cell_errors.append(f"shared cell {i}: {_short(e)}")
            continue
        for stmt in tree.body:
            try:
                exec(compile(ast.Module([stmt], []), f"<shared {i}>", "exec"), ns)
            except BaseException as e:                 # noqa: BLE001 - SystemExit included
                cell_errors.append(f"shared cell {i}, line {stmt.lineno}: {_short(e)}")
    # The import statements of the questions above this one (a notebook runs them before it).
    for i, src in enumerate(job.get("import_cells", [])):
        try:
            tree = ast.parse(_transform(src))
        except SyntaxError:
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                try:
                    exec(compile(ast.Module([stmt], []), f"<imports {i}>", "exec"), ns)
                except BaseException as e:             # noqa: BLE001
                    cell_errors.append(f"imports of an earlier question, line {stmt.lineno}: {_short(e)}")
    # The question's cells: whole cells, as a notebook runs them; an error ends that cell only.
    for i, src in enumerate(job.get("cells", [])):
        try:
            exec(compile(_transform(src), f"<cell {i}>", "exec"), ns)
        except BaseException as e:                     # noqa: BLE001
            cell_errors.append(f"cell {i}: {_short(e)}\n{traceback.format_exc(limit=-3)[-1500:]}")
    missing = [n for n in job["args"] if n not in ns]
    if missing:
        result = {"status": "missing", "names": missing}
    else:
        probe_ns = {"__name__": "probe"}
        try:
            exec(compile(job["probe_source"], "<probe>", "exec"), probe_ns)
            value = probe_ns[job["probe"]](*(ns[n] for n in job["args"]))
            result = {"status": "ok", "value": encode(value)}
        except BaseException as e:                     # noqa: BLE001
            result = {"status": "raised", "exception": type(e).__name__[:60], "error": _short(e),
                      "traceback": traceback.format_exc(limit=-4)[-2000:]}
    result["cell_errors"] = cell_errors[-20:]
    text = json.dumps(result)
    if len(text) > MAX_RESULT:
        text = json.dumps({"status": "too_large", "size": len(text)})
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    data = ("\n" + MAGIC + " " + text + "\n").encode()
    while data:
        data = data[os.write(out, data):]
    os._exit(0)                                       # no atexit handler of the submission runs


if __name__ == "__main__":
    main()
