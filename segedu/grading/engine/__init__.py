"""The grading machinery; it knows no chapter (those are in :mod:`segedu.grading.content`).

Read in this order:

* ``exercise`` — :class:`Exercise` and :class:`Case`; the case inputs and the grading seed;
  :func:`compute` (runs where the student's code runs) and :func:`compare` (runs where the
  judging happens).
* ``registry`` — which exercises exist: the package's, and those one grading run adds.
* ``notebook`` — the notebook conventions; exercise notebooks from solution notebooks.
* ``check`` — the in-notebook ``segedu.check``: public cases, in the student's process.
* ``protocol`` — everything that crosses the parent/child boundary.
* ``launch`` — starting the child and killing it (its environment, its process group).
* ``child`` — the child: runs the notebook's cells and computes, confined by ``confine``.
* ``judge`` — the parent: run, classify how the run ended, judge each case.
* ``vocabulary`` — the fixed messages students read (never the submission's own text).
* ``isolation`` — the operating-system sandbox the child runs in (a package: levels,
  limits and processes, the child's files, bubblewrap, the user level).
* ``reports``, ``batch``, ``bundle`` — what grading produced, a folder of submissions, the
  instructor bundle.
"""
