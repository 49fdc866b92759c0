"""Alert-storm control. plan.py is the pure planner; its state lives in relay/spool/alerts.py and
relay/daemon/storm_runner.py runs it."""
