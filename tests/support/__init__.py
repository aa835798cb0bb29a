"""Plain modules shared by the tests: servers, processes, waiting, sample media, small helpers.

Nothing here defines a fixture; the fixtures live in a ``conftest.py`` per level and call these.
"""
