"""``segedu assign``, ``segedu check`` and ``segedu grade``: the exercises, for instructors and
students."""

from __future__ import annotations

import argparse


def run_assign(args: argparse.Namespace) -> int:
    from ..grading import assign

    if args.seed is not None and not args.bundle:
        raise ValueError("--seed sets the instructor bundle's grading seed; use it with --bundle")
    paths = assign(args.solutions, args.exercises, check=args.check)
    if args.bundle and not args.check:
        from ..grading.engine.bundle import write_bundle

        bundle = write_bundle(args.bundle, args.solutions, args.exercises, seed=args.seed)
        print(f"wrote the instructor bundle {bundle.directory}/ (manifest.json, README.md, "
              "tests/): keep it away from students")
    if args.check:
        if paths:
            print("exercises/ is out of date; run `segedu assign` and commit the result:")
            for p in paths:
                print(f"  {p}")
            return 1
        print("exercises/ is up to date.")
        return 0
    for p in paths:
        print(f"wrote {p}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..grading import check_notebook

    report = check_notebook(args.notebook, timeout=args.timeout)
    print(report.format())
    return 0 if report.full_marks else 1


def run_grade(args: argparse.Namespace) -> int:
    from ..grading.engine.batch import find_submissions, grade_submissions
    from ..grading.engine.isolation import IsolationUnavailable, choose_isolation
    from ..grading.engine.judge import Grader
    from ..grading.engine.reports import check_output_path, summary_line, write_json, write_text

    seed, tests = args.seed, list(args.tests)
    if args.bundle:
        from ..grading.engine.bundle import bundle_mismatches, read_bundle

        if seed is not None:
            raise ValueError("--seed and --bundle: the bundle fixes the grading seed")
        bundle = read_bundle(args.bundle)
        problems = bundle_mismatches(bundle)
        if problems:
            raise ValueError(f"the installed segedu's exercises differ from the bundle "
                             f"{args.bundle!r} ({'; '.join(problems)}); grade with the segedu "
                             "version that made it, or refresh it with `segedu assign --bundle`")
        seed = bundle.seed
        tests = [str(p) for p in bundle.private_tests()] + tests
    submissions = find_submissions(args.submissions)
    single = len(submissions) == 1
    if args.gradescope and not single:
        raise ValueError("--gradescope writes one submission's results.json; "
                         f"got {len(submissions)} notebooks (use --json or --csv for a batch).")
    outputs = [p for p in (args.json, args.csv, args.markdown, args.gradescope) if p]
    for path in outputs:  # before any grading: a FIFO or a link there is refused now
        check_output_path(path)
    try:
        isolation = choose_isolation(args.isolation, allow_none=args.allow_unisolated)
        grader = Grader(extra_exercises=tests, seed=seed or 0, timeout=args.timeout,
                        case_timeout=args.case_timeout, memory_limit_mb=args.memory or None,
                        isolation=isolation, protect=[s.path for s in submissions])
    except IsolationUnavailable as error:
        raise ValueError(f"{error} (segedu grade --isolation, --allow-unisolated)") from None
    print(grader.isolation, flush=True)

    def on_graded(submission, report) -> None:
        if single or args.verbose:
            if not single:
                print(f"== {submission.student}: {submission.path}")
            print(report.format(), flush=True)
        else:
            print(summary_line(submission, report), flush=True)

    book = grade_submissions(
        submissions, on_graded=on_graded, chapter=args.chapter, grader=grader,
        timeout=args.timeout, case_timeout=args.case_timeout,
        memory_limit_mb=args.memory or None, extra_exercises=tests, jobs=args.jobs)
    first = book.rows[0][1]
    if args.json:
        write_json(args.json, book.to_json())
    if args.csv:
        write_text(args.csv, book.to_csv())
    if args.markdown:
        write_text(args.markdown, first.to_markdown() if single else book.to_markdown())
    if args.gradescope:
        write_json(args.gradescope, first.to_gradescope())
    not_graded = [s.student for s, r in book.rows if r.status.startswith("not graded")]
    if not single:
        line = (f"graded {len(book.rows) - len(not_graded)} of {len(book.rows)} submissions "
                f"in {book.elapsed:.1f} s")
        if not_graded:
            line += f"; not graded: {', '.join(not_graded)}"
        print(line)
    return 1 if not_graded else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``assign``, ``check`` and ``grade`` to the subcommands."""
    assign = sub.add_parser("assign", help="generate exercises/ from solutions/")
    assign.add_argument("--solutions", default="solutions")
    assign.add_argument("--exercises", default="exercises")
    assign.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if exercises/ is out of date")
    assign.add_argument("--bundle", default=None, metavar="DIR",
                        help="also write the instructor bundle (manifest with points and the "
                             "grading seed, private tests folder) to DIR, outside exercises/")
    assign.add_argument("--seed", type=int, default=None,
                        help="the bundle's grading seed (default: kept, or drawn at random)")
    assign.set_defaults(func=run_assign)

    check = sub.add_parser("check", help="run a notebook's public checks (students)")
    check.add_argument("notebook")
    check.add_argument("--timeout", type=float, default=120)
    check.set_defaults(func=run_check)

    grade = sub.add_parser(
        "grade", help="grade notebooks or folders of them; prints 'score: X / Y' or a row each",
        description="Grade submissions, each in an operating-system sandbox (bubblewrap, else "
                    "a separate user; the level is printed) with time, memory, process and "
                    "disk limits. "
                    "A folder is searched for notebooks; its first level names the students "
                    "(submissions/alice.ipynb or submissions/alice/01_fcn.ipynb). Exits 1 if "
                    "a submission could not be graded at all. See docs/instructor.md.")
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                       help="a notebook, or a folder of notebooks")
    grade.add_argument("--tests", action="append", default=[], metavar="PATH",
                       help="instructor's test file (.py registering exercises) or folder of "
                            "them; repeatable. Submissions cannot read them")
    grade.add_argument("--chapter", default=None,
                       help="chNN of every submission (default: from the file name NN_*.ipynb "
                            "or the notebook's answer cells)")
    grade.add_argument("--timeout", type=float, default=120,
                       help="seconds per submission before it is stopped (120)")
    grade.add_argument("--case-timeout", type=float, default=10,
                       help="seconds one case may run before it fails (10)")
    grade.add_argument("--memory", type=int, default=4096, metavar="MB",
                       help="memory a submission may allocate, in MiB; 0 for no limit (4096)")
    grade.add_argument("--jobs", type=int, default=1,
                       help="submissions graded at the same time, each in its own process (1)")
    grade.add_argument("--seed", type=int, default=None,
                       help="grading seed: seeds torch, random and NumPy before every case and "
                            "shifts every case's random inputs (0)")
    grade.add_argument("--bundle", default=None, metavar="DIR",
                       help="instructor bundle from `segedu assign --bundle`: its seed and "
                            "private tests")
    grade.add_argument("--json", default=None, help="write the gradebook with every case here")
    grade.add_argument("--csv", default=None,
                       help="write the gradebook here: one row per submission, a column per "
                            "exercise")
    grade.add_argument("--gradescope", default=None,
                       help="write Gradescope's results.json for one submission here")
    grade.add_argument("--markdown", default=None, help="write a Markdown report here")
    grade.add_argument("--isolation", default="auto",
                       choices=("auto", "bubblewrap", "user", "none"),
                       help="the isolation level (default: the strongest available; 'user' "
                            "needs root, 'none' also --allow-unisolated; see "
                            "docs/instructor.md)")
    grade.add_argument("--allow-unisolated", action="store_true",
                       help="grade even where neither bubblewrap nor a separate user can "
                            "isolate the submissions: they then run with your own rights "
                            "(see docs/instructor.md)")
    grade.add_argument("--verbose", action="store_true",
                       help="with several submissions, print each one's full report")
    grade.set_defaults(func=run_grade)
