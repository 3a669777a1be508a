"""HTTP: the Falcon app (routes, auth, error mapping), thin resources, file serving,
client file names, and the WSGI wrapper that closes connections left with a body."""
