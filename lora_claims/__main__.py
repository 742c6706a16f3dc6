import sys

from lora_claims.cli import main

sys.exit(main())
