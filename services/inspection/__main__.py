import sys

from services.inspection.app import main

sys.exit(main())
