"""Django's PostgreSQL backend with a faster flush, for the test suite only (config.test_settings).

A transactional test (and every live_server test) ends with a flush of all tables. Django's flush is one TRUNCATE of
every table, which on PostgreSQL makes new files for each of ~65 tables and their indexes: up to 2 s per test on a
busy machine, most of a small test's time. DELETE empties the few rows such a test leaves in a fraction of that.
Every foreign key here is deferrable (Django makes them so), so the order of the deletes does not matter within the
flush's transaction. Once a table holds many rows, TRUNCATE is the quicker and leaves no dead rows behind: the flush
is then Django's.
"""

from django.db.backends.postgresql import base, operations

# More rows than this in any table (a test of big files or many records): Django's TRUNCATE.
DELETE_AT_MOST = 1_000


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        """Return DELETEs for the tables, or Django's TRUNCATE when sequences restart or a table is big."""
        if not tables or reset_sequences or self._any_bigger(tables, DELETE_AT_MOST):
            return super().sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return [
            f"{style.SQL_KEYWORD('SET CONSTRAINTS ALL DEFERRED')};",
            *(f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(table))};" for table in tables),
        ]

    def _any_bigger(self, tables, rows: int) -> bool:
        """Tell whether any of the tables holds more than this many rows."""
        probes = " OR ".join(f"EXISTS (SELECT 1 FROM {self.quote_name(table)} OFFSET {rows})" for table in tables)
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {probes}")
            return cursor.fetchone()[0]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
