"""`python -m helpers run|report ...`: execute the notebook series headlessly and render its reports (see helpers.runner.cli)."""
import sys

from helpers.runner.cli import main


def _quiet_event_loop_teardown(unraisable) -> None:  # noqa: ANN001 (sys.UnraisableHookArgs)
    """Kernel clients (jupyter_client under papermill) can leave an asyncio loop whose self-pipe is already gone; its
    __del__ then prints a traceback at interpreter exit, after the run has said all it has to say (ValueError: Invalid
    file descriptor). Nothing for a user to act on, so that one is dropped; every other one is printed as usual."""
    if getattr(unraisable.object, "__qualname__", "") == "BaseEventLoop.__del__" and isinstance(unraisable.exc_value, ValueError):
        return
    sys.__unraisablehook__(unraisable)


sys.unraisablehook = _quiet_event_loop_teardown
raise SystemExit(main())
