"""`python -m fruitnet ...` = the `fruitnet` command."""
import sys

from .cli import main

sys.exit(main())
