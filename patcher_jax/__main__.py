"""`python -m patcher_jax <command>`: see patcher_jax/cli.py."""
import sys

from patcher_jax.cli import main

sys.exit(main())
