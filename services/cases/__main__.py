import sys

from services.cases.app import main

sys.exit(main())
