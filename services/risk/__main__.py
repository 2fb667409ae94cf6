import sys

from services.risk.app import main

sys.exit(main())
