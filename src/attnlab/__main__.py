"""``python -m attnlab``: the same as the ``attnlab`` command."""

import sys

from attnlab.cli.main import main

sys.exit(main())
