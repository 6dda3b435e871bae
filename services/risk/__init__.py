"""Risk: sizes or refuses every intent before it can become an order; owns the halt."""
