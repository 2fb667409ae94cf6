import sys

from services.ops.app import main

sys.exit(main())
