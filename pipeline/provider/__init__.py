"""The Plex custom metadata provider's domain (no HTTP server, no dramatiq).

    documents   Stash scene -> the provider's JSON (MediaProvider, MediaContainer, Metadata, Image)
    matching    Plex's match request -> candidate scenes (guid, path_map reversed, relative path, file name)
    index       every Stash scene in memory, by id, path and file name, with a SQLite snapshot
    service     the index kept fresh from Stash in the background, bounded look-ups on a miss, images

The HTTP layer (Starlette) lives in `ops/provider.py`.
"""
