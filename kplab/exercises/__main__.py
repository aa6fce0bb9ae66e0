"""`python -m kplab.exercises`: every exercise as Markdown, for instructors.

    python -m kplab.exercises                  prompts and hints
    python -m kplab.exercises --solutions      ... and the solutions (all at once)
    python -m kplab.exercises --notebook 7     one notebook only
    python -m kplab.exercises --self-check     run every check against its own solution
"""
from __future__ import annotations

import argparse
import sys

from . import NOTEBOOKS, all_exercises, for_notebook


def markdown(exercises, solutions: bool) -> str:
    out, current = [], None
    for ex in exercises:
        if ex.notebook != current:
            current = ex.notebook
            out.append(f"\n## Notebook {current}\n")
        out.append(f"### {ex.id} ({ex.kind}): {ex.title}\n\n{ex.prompt}\n")
        for i, h in enumerate(ex.hints, 1):
            out.append(f"- Hint {i}: {h}")
        if ex.hints:
            out.append("")
        if solutions:
            out.append(f"**Solution.** {ex.explanation}\n")
            code = ex.answer if isinstance(ex.answer, str) else repr(ex.answer)
            out.append("```\n" + code.rstrip() + "\n```\n")
    return "\n".join(out).lstrip() + "\n"


def self_check(exercises) -> int:
    failures = 0
    for ex in exercises:
        fb = ex.checker(ex.answer)
        bad = [w for w, _ in ex.wrong_answers if ex.checker(w).correct]
        status = "ok" if fb.correct and not bad else "FAIL"
        failures += status == "FAIL"
        print(f"{status:4} {ex.id:5} {ex.kind:8} {ex.title}" + (f": {fb.message}" if not fb.correct else "")
              + (f" (accepts wrong answer {bad[0]!r})" if bad else ""))
    return 1 if failures else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kplab.exercises", description=__doc__.splitlines()[0])
    ap.add_argument("--solutions", action="store_true", help="include the solutions")
    ap.add_argument("--notebook", type=int, choices=NOTEBOOKS, help="only this notebook")
    ap.add_argument("--self-check", action="store_true", help="check every solution and typical mistake")
    args = ap.parse_args(argv)
    exercises = for_notebook(args.notebook) if args.notebook else all_exercises()
    if args.self_check:
        return self_check(exercises)
    sys.stdout.write("# kplab exercises" + (" and solutions" if args.solutions else "") + "\n\n"
                     + markdown(exercises, args.solutions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
