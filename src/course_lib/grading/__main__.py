"""``python -m course_lib.grading assign|grade``: student versions and grading (see the package docstring).

Exit status of ``grade``: 0 when every question of every submission was graded; 3 when a question
could not be graded (time limit, crashed or unreadable process) or a file is not a valid notebook
(the reports and gradebook are still written); 2 for a usage error (no key, unknown question).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import assign, is_master
from . import sandbox
from .harness import GradingError, grade_many, load_key, summary


def _keys_for(paths: list[Path], dist: Path, key: Path | None) -> dict:
    if key is not None:
        k = load_key(key)
        return {k["chapter"]: k}
    keys = {p.parent.parent.name: load_key(p) for p in sorted(dist.glob("*/autograder/*-key.json"))}
    if not keys:
        raise GradingError(f"no answer key in {dist}/*/autograder/: run `make student` "
                           "(python -m course_lib.grading assign) first, or pass --key")
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading",
                                     description="Student versions and grading of the course's exercises.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assign", help="student notebooks, autograders and answer keys into DIST/<chapter>")
    a.add_argument("notebooks", nargs="*", type=Path, help="master notebooks (default: every chapter with exercises)")
    a.add_argument("--dist", type=Path, default=Path("dist"))
    a.add_argument("--no-run-tests", action="store_true",
                   help="do not run the tests against the solutions (otter executes the notebook)")
    a.add_argument("--no-key", action="store_true", help="do not build the answer keys")
    g = sub.add_parser("grade", help="grade a submitted notebook, or every file of a folder (a gradebook)")
    g.add_argument("submission", type=Path, help="a notebook, or a folder of submissions")
    g.add_argument("--dist", type=Path, default=Path("dist"), help="where `assign` wrote the answer keys")
    g.add_argument("--key", type=Path, help="an answer key (default: by each notebook's assignment name, from DIST)")
    g.add_argument("--out", type=Path, help="output folder (default: <submission>-grade/)")
    g.add_argument("--questions", help="comma-separated question names to grade (default: all)")
    g.add_argument("--jobs", type=int, help="sandboxes at a time (default: the number of cores)")
    g.add_argument("--max-timeout", type=float, help="lower every question's time limit to this many seconds")
    args = parser.parse_args(argv)
    if args.cmd == "assign":
        from ..book import notebooks, repo_root

        targets = args.notebooks or [p for p in notebooks(repo_root()) if is_master(p)]
        if not targets:
            print("no master notebooks (with an ASSIGNMENT CONFIG cell) found", file=sys.stderr)
            return 1
        for nb in targets:
            res = assign(nb, args.dist, key=False if args.no_key else None,
                         run_tests=not args.no_run_tests)
            print(f"{res.chapter}: student {res.student} ({len(res.questions)} questions), "
                  f"answer key {res.key or 'NOT BUILT (no usable sandbox here)'}")
        return 0
    if not sandbox.available():
        print("grading needs bubblewrap and util-linux (prlimit, setpriv): "
              "`apt-get install bubblewrap util-linux` (or `make system-packages`)", file=sys.stderr)
        return 2
    try:
        keys = _keys_for([args.submission], args.dist, args.key)
    except GradingError as e:
        print(e, file=sys.stderr)
        return 2
    questions = [q.strip() for q in args.questions.split(",")] if args.questions else None
    folder = args.submission.is_dir()
    files = sorted(p for p in args.submission.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if folder else [args.submission]
    out = args.out or args.submission.with_name(args.submission.name.removesuffix(".ipynb") + "-grade")
    try:
        if folder:
            reports = grade_many(files, keys, out_dir=out, questions=questions, jobs=args.jobs,
                                 max_timeout=args.max_timeout)
        else:
            reports = grade_many(files, keys, questions=questions, jobs=args.jobs, progress=False,
                                 per_submission_dirs={files[0]: out}, max_timeout=args.max_timeout)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if folder:
        for r in reports:
            state = r["invalid"] or (f"errors in {', '.join(r['errors'])}" if r["errors"] else "ok")
            print(f"{r['submission']}: {r['total']:g} / {r['max_total']:g}  ({state})")
        print(f"gradebook: {out / 'gradebook.csv'} and {out / 'gradebook.json'}; "
              f"reports: {out}/<name>/report.txt (student), instructor.json (instructor only)")
    else:
        print(summary(reports[0]), end="")
        print(f"report: {out / 'report.json'} and {out / 'report.txt'} (for the student); "
              f"{out / 'instructor.json'} (instructor only)")
    return 3 if any(r["errors"] or r["invalid"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
