"""``python -m jaxinit.convert SRC DST --to flax|torch``: the command line of
:func:`jaxinit.convert_checkpoint` (see ``_jaxinit.jax_and_torch.convert_cli`` for the options).

A module of its own, not a name in ``jaxinit``: ``import jaxinit`` never loads it (it may load
torch for DCP directories).
"""
from __future__ import annotations

import sys

from _jaxinit.jax_and_torch.convert_cli import main

if __name__ == "__main__":
    sys.exit(main())
