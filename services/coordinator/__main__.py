import sys

from services.coordinator.app import main

sys.exit(main())
