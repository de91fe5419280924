"""Sans-I/O core: pure logic shared by the async source and its generated sync twin.

Nothing here touches a socket, a file or an event loop, so every piece is unit-tested with an
injected clock and random source.
"""
