"""Errors a user can fix, and the exit statuses of every ``hsm-bench`` command.

Anything raised as :class:`HsmBenchError` (or a subclass) reaches the user as one line,
``hsm-bench <command>: error: <message>``, with exit status :data:`EXIT_ERROR`; the message
must say what to do. Other exceptions are bugs: the CLI still prints one line (naming the
exception type and ``HSM_BENCH_TRACEBACK=1``), never a traceback unless asked for.

Exit statuses (documented in the README and in ``hsm-bench run --help``):

* 0 (:data:`EXIT_OK`): every item of every stage succeeded.
* 1 (:data:`EXIT_PARTIAL`): the command finished, but some items failed; the summary names
  how many and where their rows are. Rerunning retries them.
* 2 (:data:`EXIT_ERROR`): nothing useful was computed: a usage or setup error (bad option,
  unknown name, missing weights or data), or no item succeeded.
* 130 (:data:`EXIT_INTERRUPTED`): interrupted (Ctrl-C); finished items are kept and the same
  command resumes.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class HsmBenchError(Exception):
    """An error the user fixes; its message is printed as one line."""


class ConfigError(HsmBenchError):
    """An invalid option, override key or parameter value."""


class SetupError(HsmBenchError):
    """Something a run needs before it can start is missing or unusable."""


class BuildError(HsmBenchError):
    """A test set cannot be built from what was given."""
