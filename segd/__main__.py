"""``python -m segd`` is the ``segd`` command."""

from segd.cli import main

raise SystemExit(main())
