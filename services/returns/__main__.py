import sys

from services.returns.app import main

sys.exit(main())
