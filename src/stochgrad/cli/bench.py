"""``stochgrad bench``: every report that the parts of the library provide, in one run.

A report is a function ``<part>_report() -> str`` in a module ``stochgrad.cli.report_<part>``
(for example :func:`stochgrad.cli.report_implicit.implicit_report`). Modules are discovered at
run time; a report that cannot be imported or fails is skipped with a one-line message.
"""

from __future__ import annotations

import importlib
import pkgutil
import time

import stochgrad.cli

__all__ = ["discover_reports", "run_reports"]

PREFIX = "report_"


def discover_reports() -> list[str]:
    """Names of the ``stochgrad.cli.report_*`` modules, sorted."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(stochgrad.cli.__path__)
        if info.name.startswith(PREFIX)
    )


def run_reports(print_=print) -> int:
    """Print every report; returns 0 if at least one ran and none failed, else 1."""
    modules = discover_reports()
    if not modules:
        print_("stochgrad bench: no report modules (stochgrad.cli.report_*) are installed yet")
        return 1
    failures = 0
    for name in modules:
        part = name[len(PREFIX) :]
        function = f"{part}_report"
        try:
            report = getattr(importlib.import_module(f"stochgrad.cli.{name}"), function)
        except (ImportError, AttributeError) as error:
            print_(f"skipped {part}: {function} is not available ({error})")
            continue
        started = time.perf_counter()
        try:
            text = report()
        except Exception as error:  # one broken report must not hide the others
            failures += 1
            print_(f"failed {part}: {type(error).__name__}: {error}")
            continue
        print_(f"== {part} ({time.perf_counter() - started:.1f} s) ==")
        print_(text)
        print_("")
    return 1 if failures else 0
