"""Administration: the astcti-shell command language, its admin socket server, trace bus."""
