import sys

from services.warehouse_intake.app import main

sys.exit(main())
