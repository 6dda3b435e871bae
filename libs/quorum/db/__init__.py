"""PostgreSQL access: SQLAlchemy 2 Core over asyncpg, one metadata for all tables, inbox and outbox."""
