"""Help text shared by the ``dna`` command and the pipeline scripts: every option shows its default,
and one concept has one flag name (old spellings stay accepted as aliases).

Kept to argparse and the standard library: building a parser must not import torch, timm or ray
(``dna --help`` and ``--compile`` stay light).
"""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already says what its default is.

    Not shown for on/off flags (off unless given), required options, or a None/empty default
    whose meaning the help must then spell out ("default: the architecture's").
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or not shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


class RawDescriptionDefaultsFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """:class:`DefaultsFormatter` keeping the description's and epilog's line breaks (examples)."""


def shows_default(action: argparse.Action) -> bool:
    """Whether :class:`DefaultsFormatter` adds the default of ``action`` to its help."""
    if action.default in (None, argparse.SUPPRESS, [], ()) or action.nargs == 0 or action.required:
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


def help_says_default(action: argparse.Action) -> bool:
    """The help of ``action`` (as printed) says its default, or it has none to say (flags, required)."""
    if action.nargs == 0 or action.required or (not action.option_strings and action.nargs is None):
        return True
    return "default" in DefaultsFormatter("x")._get_help_string(action).lower()


def version_text() -> str:
    """``dna-nas X.Y.Z`` from the package (``dna.__version__``, what the image tag uses too)."""
    from dna import __version__

    return f"dna-nas {__version__}"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the package version and exit")
