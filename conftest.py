"""Root pytest configuration: fixtures shared by app tests and cross-app tests."""

pytest_plugins = ["tests.fixtures"]
