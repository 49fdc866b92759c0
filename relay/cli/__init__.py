"""The command line (DESIGN.md section 6): main.py parses; one module per group of commands."""
