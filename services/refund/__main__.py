import sys

from services.refund.app import main

sys.exit(main())
