"""Order management: turns approved intents into orders, routes them to a venue, tracks their lifecycle."""
