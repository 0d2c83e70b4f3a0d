"""Policy data of consent (the profession matrix), shipped as package data."""
