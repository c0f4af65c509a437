"""`python -m diversens.options_doc > docs/options.md`: every option of every command, as Markdown
(diversens.commands.options.markdown)."""

import argparse
import sys

from diversens.cli import build_parser
from diversens.commands.options import markdown

(sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
sys.stdout.write(markdown(dict(sub.choices)))
