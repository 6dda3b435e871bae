"""Operator REST gateway: reads from the database, controls through typed commands on the bus."""
