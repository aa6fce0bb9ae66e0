import os
import sys

from .cli import main

code = main()
# `python -m kplab trace --rules DUMP` of a large dump leaves millions of objects (a 10,000-Service
# dump is 170,000 rules): freeing them one by one as the interpreter exits takes a tenth of a
# second and serves nothing. Flush what was written and leave at once.
try:
    sys.stdout.flush()
    sys.stderr.flush()
except BrokenPipeError:                  # the reader went away (`| head`): as main() does, not an error
    pass
os._exit(0 if code is None else code)
