import sys

from pixelssl.cli import main

sys.exit(main())
