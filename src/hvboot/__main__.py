import sys

from hvboot.cli import main

sys.exit(main())
