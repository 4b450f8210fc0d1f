import sys

from hvboot.cli.main import main

sys.exit(main())
