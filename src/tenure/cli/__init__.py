"""The ``tenure`` command: run a command under a lock or as elected leader, inspect, run the demo.

The entry point is ``tenure.cli.main:main``. This package imports nothing on purpose, so that
``python -m tenure.cli.main`` does not find the module already imported when it runs it.
"""
