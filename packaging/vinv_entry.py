"""The packaged app's entry point: converter.app.cli's ``vinv`` command, frozen by PyInstaller.

vinv-batch and vinv-watch convert in worker processes started with multiprocessing's "spawn" method;
in a frozen app those workers are this same executable, and freeze_support() turns such a start
into a worker instead of a second ``vinv`` command. It must run before anything else.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from converter.app.cli import main

    sys.exit(main())
