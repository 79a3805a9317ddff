import sys

from flowcept_dist.cli.main import main

sys.exit(main())
