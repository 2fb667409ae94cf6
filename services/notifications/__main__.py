import sys

from services.notifications.app import main

sys.exit(main())
