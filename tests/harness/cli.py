"""Command-line helpers of the bench/ scripts, which run as modules from the
repository root: python3 -m bench.NAME."""

import shlex
import sys


def comma_choices(parser, text, known, what):
    """The comma-separated items of ``text``; a parser error names any item
    not in ``known``."""
    items = [x for x in text.split(",") if x]
    bad = [x for x in items if x not in known]
    if bad:
        parser.error("unknown %s: %s (known: %s)"
                     % (what, ", ".join(bad), ", ".join(known)))
    return items


def _main_module():
    """The dotted name this script runs as (python3 -m bench.NAME)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]


def prog():
    """argparse's prog: how to run the script, not the file's bare name."""
    return "python3 -m %s" % _main_module()


def command_line():
    """This run's command, as one types it again from the repository root
    (recorded with the results)."""
    return shlex.join(["python3", "-m", _main_module()] + sys.argv[1:])
