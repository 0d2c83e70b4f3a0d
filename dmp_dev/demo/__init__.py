"""`dmp demo`: a scripted patient and professional journey through the real gateway."""
