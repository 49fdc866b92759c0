"""The config: schema.py holds the frozen types (pure core); load.py reads YAML into them.

Nothing is imported here, so that the core can import `relay.config.schema` without the loader
(YAML, e-mail validation, file reads) coming along.
"""
