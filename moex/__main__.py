import sys

from moex.cli import main

sys.exit(main())
