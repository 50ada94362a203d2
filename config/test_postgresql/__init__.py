"""The test suite's PostgreSQL backend: Django's, emptying tables between transactional tests with DELETE."""
