"""``python -m testservers.fake_ses``: see :mod:`testservers.fake_ses.cli`."""

from testservers.fake_ses.cli import main

raise SystemExit(main())
