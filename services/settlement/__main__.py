import sys

from services.settlement.app import main

sys.exit(main())
