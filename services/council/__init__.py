"""Signal council: strategies vote; in Solo mode one named strategy decides."""
