"""The spool: the only owner of SQL. interface.py is what the shell depends on; sqlite.py is
the SQLite implementation; schema.py the DDL and migrations; admin.py the CLI's reads."""
