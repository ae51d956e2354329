"""The national desk: the web wall (state, store, HTTP, browser) and the client commands."""
