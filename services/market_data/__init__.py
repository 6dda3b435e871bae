"""Market-data ingestion: file replay and REST backfills (``service``), live ccxt feeds (``live``, which runs on
the narrow ``LiveHost`` the service hands it and never imports ``service``), and their ``settings``."""
