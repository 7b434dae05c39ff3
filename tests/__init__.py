"""The test suite. Imported first, before any test module or the library.

Bytecode caches are written even where ``PYTHONDONTWRITEBYTECODE`` is set (as on the
machines this suite runs on): without them each xdist worker, and each child process a
test starts (the CLI, the examples, killed writers), compiles the library and rewrites
every test module's assertions anew, about 5 s a worker.
"""

import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
