"""``python -m sparse24.bench``: see :mod:`sparse24.bench.cli`."""

import sys

from sparse24.bench.cli import main

sys.exit(main())
