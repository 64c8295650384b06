"""``python -m tinymf``: the same as the ``tinymf`` command."""

from .cli import main

raise SystemExit(main())
