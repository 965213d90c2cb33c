"""Start an untrusted command under operating-system isolation, and read back what it wrote.

The grader's other defences (:mod:`segedu.grading.engine.confine`: Python audit hooks, a call
monitor) live *inside* the submission's process, so code that takes the process over can
undo them. This package puts the boundary in the kernel instead. Read it in this order:

1. :mod:`.levels` — :func:`detect_isolation` chooses the strongest level this machine offers
   (or :func:`choose_isolation` checks the one the instructor names) and says, in one line,
   what it guarantees (:class:`Isolation`):

   * ``"bubblewrap"`` — ``bwrap`` gives the child its own user, mount, PID, network, IPC, UTS
     and cgroup namespaces (:mod:`.bwrap`);
   * ``"user"`` — no bubblewrap, but we are root: the child runs as a uid of its own in a
     private folder (:mod:`.plain`);
   * ``"none"`` — only when the instructor asks for it (``allow_none=True``): a plain
     subprocess with the grader's own rights (:mod:`.plain`). Otherwise
     :class:`IsolationUnavailable`.

2. :mod:`.processes` — :class:`Limits`, the resource limits every level applies, and the
   processes of a run: started limited, and all killed and reaped at its end.

3. :mod:`.run` — :func:`run_isolated` runs ``argv`` and returns an :class:`IsolatedRun`: exit
   status, timeout, the tails of stdout/stderr, and the regular files the child left in its
   folder. When it returns, no process of the run is left.

4. :mod:`.files` — :func:`read_child_file` and :func:`list_child_dir` read what the child
   wrote without trusting it: no symbolic link is followed, only regular files are read,
   never more than a given size, and nothing blocks.

Why each level is built the way it is, is said in :mod:`.bwrap` and :mod:`.plain`.
"""

from .files import ChildFileRejected, list_child_dir, read_child_file
from .levels import (
    CHILD_HOME,
    LEVELS,
    Isolation,
    IsolationUnavailable,
    choose_isolation,
    detect_isolation,
)
from .processes import Limits
from .run import IsolatedRun, run_isolated

__all__ = [
    "CHILD_HOME", "LEVELS", "Isolation", "IsolationUnavailable", "IsolatedRun", "Limits",
    "ChildFileRejected", "choose_isolation", "detect_isolation", "list_child_dir",
    "read_child_file", "run_isolated",
]
