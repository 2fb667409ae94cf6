import sys

from services.pickup.app import main

sys.exit(main())
