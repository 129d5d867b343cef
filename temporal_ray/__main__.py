import sys

from temporal_ray.cli import main

sys.exit(main())
