"""Pure geometry functions: camera projection, Procrustes alignment, registration."""
